import { newId } from "./ids.ts";
import type { AuditRecord, ClientInfo, ExternalIdentity, LoginResult, MfaChallengeResult } from "./model.ts";
import type { SigninGate } from "./adaptive-mfa.ts";
import type { AccountWrite } from "./ports/signin.ts";
import type { SingleUse } from "./ports/single-use.ts";
import type { MfaMethod } from "./risk.ts";
import { loginResultOf } from "./login-result.ts";
import { quietRecorder } from "./quiet-audit.ts";
import type { SigninDeps } from "./signin.ts";

/** The sign-in's one write: a session opened, or a challenge stored when a second factor is asked for. */

/** Authentication methods of a federated sign-in: `fed`, then what the provider says it did. */
function federatedAmr(identity: ExternalIdentity): string[] {
  return identity.amr.length > 0 ? ["fed", ...identity.amr] : ["fed"];
}

/** The audit record of a sign-in that reached its write (completed, or stopped at MFA). */
function signinAudit(
  type: "signin.succeeded" | "signin.mfa_required",
  identity: ExternalIdentity,
  userId: string,
  client: ClientInfo,
  at: Date,
  detail: Record<string, unknown>,
): AuditRecord {
  return {
    type,
    at,
    userId,
    provider: identity.provider.name,
    issuer: identity.issuer,
    subject: identity.subject,
    client,
    detail,
  };
}

/**
 * The record of a new identity attached to an existing account by verified e-mail
 * (`identity.linked_by_email`): who, through which provider, and what proved it beyond the e-mail.
 */
function linkAudit(
  identity: Pick<ExternalIdentity, "issuer" | "subject"> & { provider: { name: string } },
  userId: string,
  client: ClientInfo,
  at: Date,
  detail: Record<string, unknown>,
): AuditRecord {
  return {
    type: "identity.linked_by_email",
    at,
    userId,
    provider: identity.provider.name,
    issuer: identity.issuer,
    subject: identity.subject,
    client,
    detail: { by: "verified_email", ...detail },
  };
}

export interface SigninCommit {
  /** The sign-in completes: in one transaction the account, the session, its first refresh token and what was seen. */
  openSession(
    identity: ExternalIdentity,
    account: AccountWrite,
    now: Date,
    client: ClientInfo,
    gate: SigninGate | null,
    uses: readonly SingleUse[],
  ): Promise<LoginResult>;
  /**
   * The sign-in stops at MFA: in one transaction the account is created or linked if it is new,
   * and the challenge is stored (hashed token, bound to user, identity, provider, device and the
   * risk); no session and no token exist until VerifyMfa completes it.
   */
  createChallenge(
    identity: ExternalIdentity,
    account: AccountWrite,
    now: Date,
    client: ClientInfo,
    gate: SigninGate,
    methods: readonly MfaMethod[],
    uses: readonly SingleUse[],
  ): Promise<MfaChallengeResult>;
}

export function createSigninCommit(deps: SigninDeps): SigninCommit {
  const { writer, opaqueTokens } = deps;
  const recordQuietly = quietRecorder(deps.audit, deps.onAuditFailure);

  async function openSession(
    identity: ExternalIdentity,
    account: AccountWrite,
    now: Date,
    client: ClientInfo,
    gate: SigninGate | null,
    uses: readonly SingleUse[],
  ): Promise<LoginResult> {
    const sessionId = newId("ses");
    const refresh = opaqueTokens.issue("rt");
    const expiresAt = new Date(now.getTime() + deps.sessionTtlSeconds * 1000);
    const amr = federatedAmr(identity);
    const userId = account.kind === "create" ? account.user.id : account.userId;
    const user = await writer.commitSignin({
      account,
      at: now,
      uses,
      session: {
        id: sessionId,
        userId,
        provider: identity.provider.name,
        amr,
        client,
        createdAt: now,
        expiresAt,
      },
      refreshToken: {
        id: newId("rtk"),
        sessionId,
        tokenHash: refresh.hash,
        createdAt: now,
        expiresAt,
      },
      seen: gate?.seen,
      audit: signinAudit("signin.succeeded", identity, userId, client, now, {
        account: account.kind,
        ...(gate === null ? {} : { risk: gate.auditDetail }),
      }),
    });
    if (account.kind === "link") {
      // Linked by e-mail without a second factor (the account has none, or a challenge would
      // have been asked for): the weaker case of account linking, so it gets an event of its own.
      await recordQuietly(
        linkAudit(identity, userId, client, now, { second_factor: "none", risk_level: gate?.summary.level ?? null }),
      );
    }
    const accessToken = await deps.accessTokens.issue(
      { userId, sessionId, amr, provider: identity.provider.name, authTime: now },
      now,
    );
    const result = loginResultOf(deps, user, sessionId, accessToken, refresh.token, now);
    if (gate !== null) result.risk = gate.summary;
    if (gate?.decision.kind === "allow_unenrolled") result.mfaCheckReason = "mfa_enrollment_required";
    return result;
  }

  async function createChallenge(
    identity: ExternalIdentity,
    account: AccountWrite,
    now: Date,
    client: ClientInfo,
    gate: SigninGate,
    methods: readonly MfaMethod[],
    uses: readonly SingleUse[],
  ): Promise<MfaChallengeResult> {
    const token = opaqueTokens.issue("chg");
    const userId = account.kind === "create" ? account.user.id : account.userId;
    const expiresAt = new Date(now.getTime() + (deps.challengeTtlSeconds ?? 300) * 1000);
    const challengeId = newId("chl");
    const reason = gate.summary.reason ?? "policy";
    const user = await writer.commitSignin({
      account,
      at: now,
      // The challenge is this token's use: completing it needs the challenge, not the token.
      uses,
      challenge: {
        id: challengeId,
        tokenHash: token.hash,
        userId,
        identityId: account.kind === "existing" ? account.identityId : account.identity.id,
        provider: identity.provider.name,
        deviceKey: gate.device?.key ?? null,
        ip: client.ip,
        userAgent: client.userAgent,
        amr: federatedAmr(identity),
        risk: gate.summary,
        context: gate.seen,
        methods,
        pendingIdentity: account.kind === "link" ? account.identity : null,
        clientId: client.oauthClientId ?? null,
        createdAt: now,
        expiresAt,
      },
      audit: signinAudit("signin.mfa_required", identity, userId, client, now, {
        account: account.kind,
        challenge_id: challengeId,
        risk: gate.auditDetail,
      }),
    });
    return {
      kind: "mfa_required",
      user,
      challengeToken: token.token,
      expiresAt,
      methods: [...methods],
      reason,
      risk: gate.summary,
    };
  }

  return { openSession, createChallenge };
}
