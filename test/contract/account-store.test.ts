import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SigninConflict } from "../../src/core/ports.ts";
import type { AccountWrite } from "../../src/core/ports.ts";
import { createAccountStore, createAuditLog } from "../../src/store/account-store.ts";
import { type Database, openDatabase } from "../../src/store/database.ts";
import { migrate } from "../../src/store/migrate.ts";
import { type TestDatabase, testDatabaseKinds } from "../support/databases.ts";

const client = { ip: "192.0.2.1", userAgent: "vitest", requestId: "req-1", deviceId: null };
let seq = 0;
const unique = () => `${Date.now().toString(36)}${(seq++).toString(36)}`;

function newUserWrite(opts: { subject?: string; username?: string; email?: string | null } = {}): AccountWrite & { kind: "create" } {
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

function signinWrite(account: AccountWrite) {
  const userId = account.kind === "create" ? account.user.id : account.userId;
  const sessionId = `ses_${unique()}`;
  const at = new Date("2026-02-01T00:00:00Z");
  return {
    account,
    at,
    session: { id: sessionId, userId, provider: "op", amr: ["fed"], client, createdAt: at, expiresAt: new Date(at.getTime() + 3600_000) },
    refreshToken: { id: `rtk_${unique()}`, sessionId, tokenHash: `hash-${unique()}`, createdAt: at, expiresAt: new Date(at.getTime() + 3600_000) },
    audit: { type: "signin.succeeded", at, userId, provider: "op", client },
  };
}

for (const kind of testDatabaseKinds()) {
  describe(`account store on ${kind.dialect}`, () => {
    let td: TestDatabase;
    let db: Database;

    beforeAll(async () => {
      td = await kind.create();
      await migrate(td.url);
      db = await openDatabase({ url: td.url, poolSize: 5, connectTimeoutMs: 5000, statementTimeoutMs: 5000 });
    });
    afterAll(async () => {
      await db?.close();
      await td?.drop();
    });

    const counts = async () => ({
      users: await db.client.user.count(),
      identities: await db.client.identity.count(),
      sessions: await db.client.session.count(),
      refreshTokens: await db.client.refreshToken.count(),
      audit: await db.client.auditEvent.count(),
    });

    it("creates a user with its identity, session, refresh token and audit in one commit", async () => {
      const store = createAccountStore(db.client);
      const write = newUserWrite();
      const user = await store.commitSignin(signinWrite(write));
      expect(user).toMatchObject({ id: write.user.id, username: write.user.username, status: "active", emailVerified: true });
      expect(user.createdAt.toISOString()).toBe("2026-01-15T10:30:00.000Z");
      const found = await store.findByIdentity("https://op.example", write.identity.subject);
      expect(found?.user.id).toBe(write.user.id);
      expect(found?.identityId).toBe(write.identity.id);
      expect(await store.findByIdentity("https://other.example", write.identity.subject)).toBeNull();
    });

    it("reports a lost identity race as SigninConflict(identity) and writes nothing of the loser", async () => {
      const store = createAccountStore(db.client);
      const first = newUserWrite();
      await store.commitSignin(signinWrite(first));
      const before = await counts();
      const second = newUserWrite({ subject: first.identity.subject });
      const err = await store.commitSignin(signinWrite(second)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SigninConflict);
      expect((err as SigninConflict).target).toBe("identity");
      expect(await counts()).toEqual(before);
    });

    it("reports a taken username as SigninConflict(username) and rolls everything back", async () => {
      const store = createAccountStore(db.client);
      const first = newUserWrite();
      await store.commitSignin(signinWrite(first));
      const before = await counts();
      const err = await store.commitSignin(signinWrite(newUserWrite({ username: first.user.username }))).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SigninConflict);
      expect((err as SigninConflict).target).toBe("username");
      expect(await counts()).toEqual(before);
    });

    it("links a new identity to an existing user and finds users by verified e-mail", async () => {
      const store = createAccountStore(db.client);
      const first = newUserWrite();
      await store.commitSignin(signinWrite(first));
      const owners = await store.findByVerifiedEmail(first.user.emailNormalized!);
      expect(owners.map((u) => u.id)).toEqual([first.user.id]);
      const link: AccountWrite = {
        kind: "link",
        userId: first.user.id,
        identity: { id: `idn_${unique()}`, issuer: "https://second.example", subject: "s2", provider: "second", email: null, emailVerified: false },
      };
      const user = await store.commitSignin(signinWrite(link));
      expect(user.id).toBe(first.user.id);
      expect((await store.findByIdentity("https://second.example", "s2"))?.user.id).toBe(first.user.id);
      expect(await db.client.identity.count({ where: { userId: first.user.id } })).toBe(2);
    });

    it("does not find unverified e-mail addresses", async () => {
      const store = createAccountStore(db.client);
      const w = newUserWrite();
      w.user.emailVerified = false;
      await store.commitSignin(signinWrite(w));
      expect(await store.findByVerifiedEmail(w.user.emailNormalized!)).toEqual([]);
    });

    it("touches an existing link on a returning sign-in", async () => {
      const store = createAccountStore(db.client);
      const w = newUserWrite();
      await store.commitSignin(signinWrite(w));
      const later = signinWrite({ kind: "existing", userId: w.user.id, identityId: w.identity.id });
      later.at = new Date("2026-03-01T00:00:00Z");
      await store.commitSignin(later);
      const identity = await db.client.identity.findUniqueOrThrow({ where: { id: w.identity.id } });
      expect(identity.lastSigninAt.toISOString()).toBe("2026-03-01T00:00:00.000Z");
      expect(await db.client.session.count({ where: { userId: w.user.id } })).toBe(2);
    });

    it("records audit events with their client detail", async () => {
      const audit = createAuditLog(db.client);
      await audit.record({ type: "signin.failed", at: new Date(), code: "id_token_expired", client, detail: { n: 1 } });
      const row = await db.client.auditEvent.findFirstOrThrow({ where: { code: "id_token_expired" } });
      expect(row).toMatchObject({ type: "signin.failed", ip: "192.0.2.1", userAgent: "vitest", requestId: "req-1", detail: '{"n":1}' });
    });

    it("counts recent failed sign-ins per address, without the limit's own refusals, up to a cap", async () => {
      const audit = createAuditLog(db.client);
      const ip = "198.51.100.77";
      const at = (s: string) => new Date(`2026-04-01T00:${s}Z`);
      const failed = (t: string, code: string, from = ip) =>
        audit.record({ type: "signin.failed", at: at(t), code, client: { ...client, ip: from } });
      await failed("00:00", "id_token_expired");
      await failed("05:00", "id_token_expired");
      await failed("06:00", "rate_limited");
      await failed("07:00", "id_token_signature_invalid");
      await failed("07:30", "id_token_expired", "198.51.100.78");
      await audit.record({ type: "signin.succeeded", at: at("08:00"), client: { ...client, ip } });
      expect(await audit.failuresFromIp(ip, at("01:00"), 10)).toBe(2);
      expect(await audit.failuresFromIp(ip, at("00:00"), 10)).toBe(3);
      expect(await audit.failuresFromIp(ip, at("00:00"), 2)).toBe(2);
      expect(await audit.failuresFromIp("203.0.113.1", at("00:00"), 10)).toBe(0);
    });
  });
}
