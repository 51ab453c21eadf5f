import { beforeAll, describe, expect, it } from "vitest";
import type { Clock } from "../../src/core/clock.ts";
import { createSessionService, type SessionService } from "../../src/core/sessions.ts";
import { createAccountStore } from "../../src/store/account-store.ts";
import type { Database } from "../../src/store/database.ts";
import { createSessionStore } from "../../src/store/session-store.ts";
import { createTrustedDeviceStore } from "../../src/store/trusted-device-store.ts";
import { createHotStore } from "../../src/store/hot/hot-store.ts";
import { createSigningKeyStore } from "../../src/store/signing-key-store.ts";
import { createLocalKeyRing } from "../../src/tokens/access-tokens.ts";
import { createKeyEncryption } from "../../src/tokens/key-encryption.ts";
import { createOpaqueTokens } from "../../src/tokens/opaque-tokens.ts";
import { testDatabaseKinds, useMigratedDatabase } from "../support/databases.ts";
import { codeOf } from "../support/error-code.ts";

const client = { ip: "192.0.2.9", userAgent: "vitest", requestId: null, deviceId: null };
let n = 0;
const uid = () => `${Date.now().toString(36)}${(n++).toString(36)}`;

/** The session store as each implementation provides it: Prisma alone, or the driver's hot path. */
const IMPLEMENTATIONS = {
  prisma: (db: Database) => createSessionStore(db.client),
  driver: (db: Database) => {
    const hot = createHotStore(db);
    return {
      ...createSessionStore(db.client),
      refresh: hot.refresh,
      findSession: hot.findSession,
      findUser: hot.findUser,
    };
  },
};

for (const kind of testDatabaseKinds())
  for (const [impl, sessionStoreOf] of Object.entries(IMPLEMENTATIONS)) {
    describe(`sessions and refresh rotation on ${kind.dialect} (${impl})`, kind.suiteOptions, () => {
      const db = useMigratedDatabase(kind, { poolSize: 10 });
      let now = new Date("2026-03-01T12:00:00Z");
      const clock: Clock = { now: () => now };
      let sessions: SessionService;
      const opaque = createOpaqueTokens();

      beforeAll(async () => {
        const keyRing = await createLocalKeyRing({
          issuer: "https://identity.test",
          audience: ["identity"],
          ttlSeconds: 1800,
          store: createSigningKeyStore(db().client),
          encryption: createKeyEncryption(Buffer.alloc(32, 1)),
          clock,
        });
        sessions = createSessionService({
          clock,
          store: sessionStoreOf(db()),
          accessTokens: keyRing,
          accessTokenVerifier: keyRing,
          opaqueTokens: opaque,
          idleTtlSeconds: 3600,
          trustedDevices: createTrustedDeviceStore(db().client),
        });
      });

      /** A user with one session, as a sign-in leaves it; returns its refresh token. */
      async function signedIn(opts: { ttlSeconds?: number } = {}) {
        const userId = `usr_${uid()}`;
        const sessionId = `ses_${uid()}`;
        const refresh = opaque.issue("rt");
        const expiresAt = new Date(now.getTime() + (opts.ttlSeconds ?? 86400) * 1000);
        await createAccountStore(db().client).commitSignin({
          account: {
            kind: "create",
            user: {
              id: userId,
              username: `u${uid()}`,
              email: null,
              emailNormalized: null,
              emailVerified: false,
              phone: null,
              createdAt: now,
            },
            identity: {
              id: `idn_${uid()}`,
              issuer: "https://op",
              subject: uid(),
              provider: "op",
              email: null,
              emailVerified: false,
            },
          },
          at: now,
          session: { id: sessionId, userId, provider: "op", amr: ["fed"], client, createdAt: now, expiresAt },
          refreshToken: { id: `rtk_${uid()}`, sessionId, tokenHash: refresh.hash, createdAt: now, expiresAt },
          audit: { type: "signin.succeeded", at: now, userId, client },
        });
        return { userId, sessionId, token: refresh.token };
      }

      it("rotates: the new token works, the old one is spent, the session is touched", async () => {
        const s = await signedIn();
        now = new Date(now.getTime() + 60_000);
        const first = await sessions.refresh(s.token, client);
        expect(first.refreshToken).not.toBe(s.token);
        expect(first.user.id).toBe(s.userId);
        expect(first.sessionId).toBe(s.sessionId);
        const row = await db().client.session.findUniqueOrThrow({ where: { id: s.sessionId } });
        expect(row.lastUsedAt.getTime()).toBe(now.getTime());
        const second = await sessions.refresh(first.refreshToken, client);
        expect(second.sessionId).toBe(s.sessionId);
      });

      it("treats a spent token as reuse: the whole family is revoked and audited", async () => {
        const s = await signedIn();
        const next = await sessions.refresh(s.token, client);
        expect(await codeOf(sessions.refresh(s.token, client))).toBe("refresh_token_reused");
        expect(await codeOf(sessions.refresh(next.refreshToken, client))).toBe("session_revoked");
        const row = await db().client.session.findUniqueOrThrow({ where: { id: s.sessionId } });
        expect(row.revokedReason).toBe("refresh_token_reuse");
        expect(
          await db().client.auditEvent.count({ where: { type: "session.reuse_detected", userId: s.userId } }),
        ).toBe(1);
      });

      it("lets exactly one of many concurrent refreshes of one token win", async () => {
        const s = await signedIn();
        const results = await Promise.all(Array.from({ length: 8 }, () => codeOf(sessions.refresh(s.token, client))));
        expect(results.filter((r) => r === "ok")).toHaveLength(1);
        expect(results.filter((r) => r === "refresh_token_reused")).toHaveLength(7);
        expect(await db().client.refreshToken.count({ where: { sessionId: s.sessionId } })).toBe(2);
      });

      it("refuses unknown, expired and idle tokens with distinct codes", async () => {
        expect(await codeOf(sessions.refresh("rt_unknown", client))).toBe("refresh_token_invalid");
        expect(await codeOf(sessions.refresh("", client))).toBe("refresh_token_required");
        const idle = await signedIn();
        now = new Date(now.getTime() + 3601_000);
        expect(await codeOf(sessions.refresh(idle.token, client))).toBe("session_expired");
        const short = await signedIn({ ttlSeconds: 60 });
        now = new Date(now.getTime() + 61_000);
        expect(await codeOf(sessions.refresh(short.token, client))).toBe("session_expired");
      });

      it("refuses the access token of a user disabled or locked since it was issued", async () => {
        const s = await signedIn();
        const login = await sessions.refresh(s.token, client);
        expect((await sessions.authenticate(login.accessToken)).userId).toBe(s.userId);
        await db().client.user.update({
          where: { id: s.userId },
          data: { status: "locked", lockedUntil: new Date(now.getTime() + 60_000) },
        });
        expect(await codeOf(sessions.authenticate(login.accessToken))).toBe("user_locked");
        now = new Date(now.getTime() + 61_000);
        expect((await sessions.authenticate(login.accessToken)).userId).toBe(s.userId);
        await db().client.user.update({ where: { id: s.userId }, data: { status: "disabled", lockedUntil: null } });
        expect(await codeOf(sessions.authenticate(login.accessToken))).toBe("user_disabled");
      });

      it("refuses a user who is no longer active", async () => {
        const s = await signedIn();
        await db().client.user.update({ where: { id: s.userId }, data: { status: "disabled" } });
        expect(await codeOf(sessions.refresh(s.token, client))).toBe("user_disabled");
      });

      it("signs out one session or all, and then refresh and authenticate fail", async () => {
        const a = await signedIn();
        const la = await sessions.refresh(a.token, client);
        const principal = await sessions.authenticate(la.accessToken);
        expect(principal).toMatchObject({ userId: a.userId, sessionId: a.sessionId });
        expect(await sessions.signOut({ principal }, false, client)).toBe(1);
        expect(await codeOf(sessions.refresh(la.refreshToken, client))).toBe("session_revoked");
        expect(await codeOf(sessions.authenticate(la.accessToken))).toBe("session_revoked");
        expect(await sessions.signOut({ principal }, false, client)).toBe(0);
      });

      /** A trusted device of `userId` as VerifyMfa stores it; resolves with its credential. */
      async function trustedDevice(userId: string, expiresAt = new Date(now.getTime() + 86_400_000)) {
        const credential = opaque.issue("tdc");
        await db().client.trustedDevice.create({
          data: {
            id: `tdv_${uid()}`,
            userId,
            credentialHash: credential.hash,
            label: null,
            createdAt: now,
            lastUsedAt: now,
            expiresAt,
          },
        });
        return credential.token;
      }
      const trustedCount = (userId: string) => db().client.trustedDevice.count({ where: { userId } });

      it("signing out one session keeps the user's trusted devices; signing out everywhere forgets them", async () => {
        const a = await signedIn();
        await trustedDevice(a.userId);
        await trustedDevice(a.userId);
        const principal = await sessions.authenticate((await sessions.refresh(a.token, client)).accessToken);
        expect(await sessions.signOut({ principal }, false, client)).toBe(1);
        expect(await trustedCount(a.userId)).toBe(2);
        const b = await signedIn();
        await trustedDevice(b.userId);
        const pb = await sessions.authenticate((await sessions.refresh(b.token, client)).accessToken);
        expect(await sessions.signOut({ principal: pb }, true, client)).toBe(1);
        expect(await trustedCount(b.userId)).toBe(0);
      });

      it("forgets one trusted device by its credential, only the caller's, or all of them; audited", async () => {
        const a = await signedIn();
        const b = await signedIn();
        const pa = await sessions.authenticate((await sessions.refresh(a.token, client)).accessToken);
        const pb = await sessions.authenticate((await sessions.refresh(b.token, client)).accessToken);
        const mine = await trustedDevice(a.userId);
        await trustedDevice(a.userId);
        const theirs = await trustedDevice(b.userId);
        // Another user's credential, a malformed one, or one already forgotten forgets nothing.
        expect(await sessions.forgetDevices(pa, { credential: theirs }, client)).toBe(0);
        expect(await sessions.forgetDevices(pa, { credential: "tdc_not-a-credential" }, client)).toBe(0);
        expect(await trustedCount(b.userId)).toBe(1);
        expect(await sessions.forgetDevices(pa, { credential: mine }, client)).toBe(1);
        expect(await sessions.forgetDevices(pa, { credential: mine }, client)).toBe(0);
        expect(await trustedCount(a.userId)).toBe(1);
        expect(await sessions.forgetDevices(pa, { all: true }, client)).toBe(1);
        expect(await trustedCount(a.userId)).toBe(0);
        expect(await trustedCount(b.userId)).toBe(1);
        expect(await codeOf(sessions.forgetDevices(pb, { credential: "" }, client))).toBe("invalid_request");
        expect(await db().client.auditEvent.count({ where: { userId: a.userId, type: "device.forgotten" } })).toBe(4);
      });

      it("purges trusted devices that expired before a time, and keeps the rest", async () => {
        const a = await signedIn();
        await trustedDevice(a.userId, new Date(now.getTime() - 1000));
        await trustedDevice(a.userId, new Date(now.getTime() + 1000));
        expect(await createTrustedDeviceStore(db().client).purgeExpired(now)).toBeGreaterThanOrEqual(1);
        expect(await trustedCount(a.userId)).toBe(1);
      });

      it("purges sessions that ended before a time, with their refresh tokens, and keeps the rest", async () => {
        const store = createSessionStore(db().client);
        const old = await signedIn({ ttlSeconds: 60 });
        const live = await signedIn({ ttlSeconds: 86400 });
        const cutoff = new Date(now.getTime() + 120_000);
        expect(await store.purgeExpiredSessions(cutoff)).toBeGreaterThanOrEqual(1);
        expect(await db().client.session.count({ where: { id: old.sessionId } })).toBe(0);
        expect(await db().client.refreshToken.count({ where: { sessionId: old.sessionId } })).toBe(0);
        expect(await db().client.session.count({ where: { id: live.sessionId } })).toBe(1);
        expect(await db().client.session.count({ where: { expiresAt: { lt: cutoff } } })).toBe(0);
      });

      it("signs out by refresh token and lists only live sessions", async () => {
        const a = await signedIn();
        const l = await sessions.refresh(a.token, client);
        const principal = await sessions.authenticate(l.accessToken);
        expect((await sessions.listSessions(principal)).map((s) => s.id)).toEqual([a.sessionId]);
        expect(await codeOf(sessions.revokeSession(principal, "ses_nope", client))).toBe("session_not_found");
        // All sessions needs the access token; a refresh token ends only its own live session.
        expect(await codeOf(sessions.signOut({ refreshToken: l.refreshToken }, true, client))).toBe(
          "access_token_required",
        );
        expect(await sessions.signOut({ refreshToken: l.refreshToken }, false, client)).toBe(1);
        expect(await sessions.listSessions(principal)).toEqual([]);
        // A spent token signing out is reuse: its session ends, and the caller learns it.
        const b = await signedIn();
        await sessions.refresh(b.token, client);
        expect(await codeOf(sessions.signOut({ refreshToken: b.token }, false, client))).toBe("refresh_token_reused");
        expect((await db().client.session.findUniqueOrThrow({ where: { id: b.sessionId } })).revokedReason).toBe(
          "refresh_token_reuse",
        );
      });
    });
  }
