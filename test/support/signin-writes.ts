/**
 * Sign-in writes (core/ports/signin.ts SigninWrite) for the contract suites: a new user with its
 * identity, and the session, refresh token and audit record a completed sign-in writes.
 */
import type { AccountWrite } from "../../src/core/ports/signin.ts";

export const signinClient = { ip: "192.0.2.1", userAgent: "vitest", requestId: "req-1", deviceId: null };

let seq = 0;
/** A suffix no other call in this process returns. */
export const unique = () => `${Date.now().toString(36)}${(seq++).toString(36)}`;

/** A new user and its identity at https://op.example; its e-mail verified unless `email: null`. */
export function newUserWrite(
  opts: { subject?: string; username?: string; email?: string | null } = {},
): AccountWrite & { kind: "create" } {
  const id = `usr_${unique()}`;
  const email = opts.email === undefined ? `${id}@example.com` : opts.email;
  return {
    kind: "create",
    user: {
      id,
      username: opts.username ?? `u${unique()}`,
      email,
      emailNormalized: email,
      emailVerified: email !== null,
      phone: null,
      createdAt: new Date("2026-01-15T10:30:00Z"),
    },
    identity: {
      id: `idn_${unique()}`,
      issuer: "https://op.example",
      subject: opts.subject ?? `sub-${unique()}`,
      provider: "op",
      email,
      emailVerified: email !== null,
    },
  };
}

/** A completed sign-in of `account` at `at`: a session, its refresh token (an hour) and the audit record. */
export function signinWrite(account: AccountWrite, at = new Date("2026-02-01T00:00:00Z")) {
  const userId = account.kind === "create" ? account.user.id : account.userId;
  const sessionId = `ses_${unique()}`;
  return {
    account,
    at,
    session: {
      id: sessionId,
      userId,
      provider: "op",
      amr: ["fed"],
      client: signinClient,
      createdAt: at,
      expiresAt: new Date(at.getTime() + 3600_000),
    },
    refreshToken: {
      id: `rtk_${unique()}`,
      sessionId,
      tokenHash: `hash-${unique()}`,
      createdAt: at,
      expiresAt: new Date(at.getTime() + 3600_000),
    },
    audit: { type: "signin.succeeded", at, userId, provider: "op", client: signinClient },
  };
}
