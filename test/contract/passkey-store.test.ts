/**
 * The PasskeyStore port on Prisma, both databases: ceremonies spent once, registration in one
 * transaction (a duplicate credential writes nothing), rename/remove scoped to the user, the last
 * factor's removal ending device trust, flagging; and the sign-in reads (the hot path's two
 * implementations and MfaStore.signinHistory) offering `webauthn` only for an unflagged passkey.
 */
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { isDomainError } from "../../src/core/errors.ts";
import type { NewCeremony, PasskeyRecord } from "../../src/core/ports/webauthn.ts";
import { createHotStore } from "../../src/store/hot/hot-store.ts";
import { createPrismaSigninReader } from "../../src/store/hot/prisma.ts";
import { createMfaStore } from "../../src/store/mfa-store.ts";
import { createPasskeyStore } from "../../src/store/passkey-store.ts";
import { testDatabaseKinds, useMigratedDatabase } from "../support/databases.ts";

const T = new Date("2026-03-01T12:00:00Z");
const later = (s: number) => new Date(T.getTime() + s * 1000);
const client = { ip: "192.0.2.1", userAgent: "contract", deviceId: null, requestId: null };
const unique = () => randomUUID().slice(0, 8);

for (const kind of testDatabaseKinds()) {
  describe(`passkey store on ${kind.dialect}`, kind.suiteOptions, () => {
    const db = useMigratedDatabase(kind);

    /** A user with an identity (for the sign-in read) and a known device. */
    async function newUser() {
      const id = `usr_${unique()}`;
      const subject = `sub-${unique()}`;
      await db().client.user.create({ data: { id, username: `u-${unique()}` } });
      await db().client.identity.create({
        data: { id: `idn_${unique()}`, userId: id, issuer: "https://op.example", subject, provider: "op" },
      });
      await db().client.userDevice.create({
        data: { userId: id, deviceKey: "id:dev-a", firstSeenAt: T, lastSeenAt: T },
      });
      return { id, subject };
    }

    const ceremony = (userId: string, over: Partial<NewCeremony> = {}): NewCeremony => ({
      id: `wac_${unique()}`,
      challengeHash: randomUUID(),
      userId,
      purpose: "registration",
      mfaChallengeId: null,
      sessionId: null,
      createdAt: T,
      expiresAt: later(300),
      ...over,
    });
    const passkey = (userId: string, over: Partial<PasskeyRecord> = {}): PasskeyRecord => ({
      id: `pk_${unique()}`,
      userId,
      credentialId: Buffer.from(randomUUID()).toString("base64url"),
      publicKey: "cose",
      signCount: 0,
      transports: ["internal"],
      deviceType: "multiDevice",
      backedUp: true,
      aaguid: "00000000-0000-0000-0000-000000000000",
      name: "Key",
      createdAt: T,
      lastUsedAt: null,
      flaggedAt: null,
      ...over,
    });
    const audit = (userId: string) => ({ type: "mfa.passkey_registered", at: T, userId, client });

    async function registered(userId: string, over: Partial<PasskeyRecord> = {}) {
      const store = createPasskeyStore(db().client);
      const c = ceremony(userId);
      await store.saveCeremony(c);
      const p = passkey(userId, over);
      expect(await store.registerPasskey(c.id, p, T, audit(userId))).toBe(true);
      return p;
    }

    it("registers once per ceremony, with its audit record; a spent or expired ceremony registers nothing", async () => {
      const store = createPasskeyStore(db().client);
      const u = await newUser();
      const c = ceremony(u.id);
      await store.saveCeremony(c);
      expect(await store.findCeremony(c.challengeHash)).toMatchObject({
        id: c.id,
        userId: u.id,
        purpose: "registration",
        consumedAt: null,
      });
      const p = passkey(u.id);
      expect(await store.registerPasskey(c.id, p, T, audit(u.id))).toBe(true);
      expect((await store.findCeremony(c.challengeHash))?.consumedAt).toEqual(T);
      expect(await store.listPasskeys(u.id)).toEqual([p]);
      expect(await store.findPasskeyByCredentialId(p.credentialId)).toEqual(p);
      expect(await db().client.auditEvent.count({ where: { userId: u.id, type: "mfa.passkey_registered" } })).toBe(1);

      expect(await store.registerPasskey(c.id, passkey(u.id), T, audit(u.id))).toBe(false);
      const old = ceremony(u.id, { expiresAt: later(10) });
      await store.saveCeremony(old);
      expect(await store.registerPasskey(old.id, passkey(u.id), later(11), audit(u.id))).toBe(false);
      expect(await store.listPasskeys(u.id)).toHaveLength(1);
      expect(await db().client.auditEvent.count({ where: { userId: u.id, type: "mfa.passkey_registered" } })).toBe(1);
    });

    it("a credential id registered already (any user): webauthn_credential_exists, the ceremony unspent, nothing written", async () => {
      const store = createPasskeyStore(db().client);
      const first = await newUser();
      const p = await registered(first.id);
      const other = await newUser();
      const c = ceremony(other.id);
      await store.saveCeremony(c);
      const err = await store
        .registerPasskey(c.id, passkey(other.id, { credentialId: p.credentialId }), T, audit(other.id))
        .catch((e: unknown) => e);
      expect(isDomainError(err, "webauthn_credential_exists")).toBe(true);
      expect((await store.findCeremony(c.challengeHash))?.consumedAt).toBeNull();
      expect(await store.listPasskeys(other.id)).toEqual([]);
      expect(await db().client.auditEvent.count({ where: { userId: other.id } })).toBe(0);
    });

    it("step-up ceremonies: read back with their session, counted per session while live", async () => {
      const store = createPasskeyStore(db().client);
      const u = await newUser();
      const live = ceremony(u.id, { purpose: "step_up", sessionId: "ses_a" });
      await store.saveCeremony(live);
      await store.saveCeremony(ceremony(u.id, { purpose: "step_up", sessionId: "ses_a", expiresAt: later(10) }));
      await store.saveCeremony(ceremony(u.id, { purpose: "step_up", sessionId: "ses_b" }));
      expect(await store.findCeremony(live.challengeHash)).toMatchObject({
        id: live.id,
        purpose: "step_up",
        sessionId: "ses_a",
        mfaChallengeId: null,
      });
      expect(await store.countLiveStepUps("ses_a", T)).toBe(2);
      expect(await store.countLiveStepUps("ses_a", later(11))).toBe(1);
      expect(await store.countLiveStepUps("ses_c", T)).toBe(0);
    });

    it("rename and remove touch only the user's own passkey", async () => {
      const store = createPasskeyStore(db().client);
      const owner = await newUser();
      const stranger = await newUser();
      const p = await registered(owner.id);
      expect(await store.renamePasskey(stranger.id, p.id, "Mine now")).toBeNull();
      expect(await store.removePasskey(stranger.id, p.id, audit(stranger.id))).toBe(false);
      expect((await store.renamePasskey(owner.id, p.id, "Laptop"))?.name).toBe("Laptop");
      expect((await store.listPasskeys(owner.id)).map((x) => x.name)).toEqual(["Laptop"]);
    });

    it("removing a passkey ends every device trust of its user", async () => {
      const store = createPasskeyStore(db().client);
      const u = await newUser();
      const a = await registered(u.id);
      await registered(u.id);
      const trusted = () => db().client.trustedDevice.count({ where: { userId: u.id } });
      const trust = () =>
        db().client.trustedDevice.create({
          data: {
            id: `tdv_${Math.random().toString(36).slice(2)}`,
            userId: u.id,
            credentialHash: `h-${Math.random()}`,
            createdAt: T,
            lastUsedAt: T,
            expiresAt: new Date(T.getTime() + 86_400_000),
          },
        });
      await trust();
      expect(await trusted()).toBe(1);
      expect(await store.removePasskey(u.id, a.id, { type: "mfa.passkey_removed", at: T, userId: u.id, client })).toBe(
        true,
      );
      expect(await trusted()).toBe(0);
      expect(await db().client.auditEvent.count({ where: { userId: u.id, type: "mfa.passkey_removed" } })).toBe(1);
    });

    it("the sign-in reads offer webauthn for an unflagged passkey only (hot path driver and Prisma, signinHistory)", async () => {
      const store = createPasskeyStore(db().client);
      const u = await newUser();
      const history = { deviceKey: "id:dev-a", network: null, failuresSince: T, trustedDevice: null };
      const methodsNow = async () => {
        const query = {
          issuer: "https://op.example",
          subject: u.subject,
          verifiedEmail: null,
          ipFailures: null,
          history,
        };
        const driver = await createHotStore(db()).readSignin(query);
        const prisma = await createPrismaSigninReader(db().client, db().dialect).readSignin(query);
        const reader = (await createMfaStore(db().client).signinHistory(u.id, history)).methods;
        return [driver.linked?.history?.methods, prisma.linked?.history?.methods, reader];
      };
      expect(await methodsNow()).toEqual([[], [], []]);
      const p = await registered(u.id);
      expect(await methodsNow()).toEqual([["webauthn"], ["webauthn"], ["webauthn"]]);
      await store.flagPasskey(p.id, later(5), {
        type: "mfa.passkey_flagged",
        at: later(5),
        code: "webauthn_counter_regressed",
        userId: u.id,
        client,
      });
      expect((await store.listPasskeys(u.id))[0]?.flaggedAt).toEqual(later(5));
      expect(await methodsNow()).toEqual([[], [], []]);
      expect(await db().client.auditEvent.count({ where: { userId: u.id, type: "mfa.passkey_flagged" } })).toBe(1);
    });

    it("purges ceremonies that expired before the cut-off", async () => {
      const store = createPasskeyStore(db().client);
      const u = await newUser();
      const gone = ceremony(u.id, { expiresAt: later(-10) });
      const kept = ceremony(u.id, { expiresAt: later(600) });
      await store.saveCeremony(gone);
      await store.saveCeremony(kept);
      expect(await store.purgeExpiredCeremonies(T)).toBeGreaterThanOrEqual(1);
      expect(await store.findCeremony(gone.challengeHash)).toBeNull();
      expect(await store.findCeremony(kept.challengeHash)).not.toBeNull();
    });
  });
}
