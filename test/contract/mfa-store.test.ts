/**
 * The MFA store's contract (challenges, factors, sign-in history) and the challenge branch of
 * the sign-in transaction, on every database.
 */
import { describe, expect, it } from "vitest";
import { DomainError } from "../../src/core/errors.ts";
import type { ChallengeDecision, ChallengeState, NewChallenge } from "../../src/core/ports/mfa.ts";
import type { AccountWrite } from "../../src/core/ports/signin.ts";
import type { NewTrustedDevice } from "../../src/core/ports/trusted-devices.ts";
import { createAccountStore } from "../../src/store/account-store.ts";
import { createMfaStore } from "../../src/store/mfa-store.ts";
import { auditRow } from "../../src/store/prisma-rows.ts";
import { testDatabaseKinds, useMigratedDatabase } from "../support/databases.ts";

const client = { ip: "192.0.2.1", userAgent: "vitest", requestId: "req-mfa", deviceId: "dev-1" };
const T = new Date("2026-02-01T00:00:00Z");
const later = (s: number) => new Date(T.getTime() + s * 1000);
let seq = 0;
const unique = () => `${Date.now().toString(36)}${(seq++).toString(36)}`;
const risk = {
  score: 30,
  level: "medium" as const,
  requireMfa: true,
  recommendedMethods: ["totp"],
  signals: ["new_device"],
  reason: "new_device",
};

function newUser(): AccountWrite & { kind: "create" } {
  const id = `usr_${unique()}`;
  return {
    kind: "create",
    user: {
      id,
      username: `u${unique()}`,
      email: null,
      emailNormalized: null,
      emailVerified: false,
      phone: null,
      createdAt: T,
    },
    identity: {
      id: `idn_${unique()}`,
      issuer: "https://op.example",
      subject: `s-${unique()}`,
      provider: "op",
      email: null,
      emailVerified: false,
    },
  };
}

function sessionWrite(
  account: AccountWrite,
  at = T,
  seen?: {
    deviceKey: string | null;
    network: string | null;
    geo: null | { country: string | null; latitude: number | null; longitude: number | null };
  },
) {
  const userId = account.kind === "create" ? account.user.id : account.userId;
  const sessionId = `ses_${unique()}`;
  return {
    account,
    at,
    session: { id: sessionId, userId, provider: "op", amr: ["fed"], client, createdAt: at, expiresAt: later(3600) },
    refreshToken: {
      id: `rtk_${unique()}`,
      sessionId,
      tokenHash: `h-${unique()}`,
      createdAt: at,
      expiresAt: later(3600),
    },
    audit: { type: "signin.succeeded", at, userId, provider: "op", client },
    ...(seen === undefined ? {} : { seen }),
  };
}

function newChallenge(userId: string, identityId: string, over: Partial<NewChallenge> = {}): NewChallenge {
  return {
    id: `chl_${unique()}`,
    tokenHash: `chg-${unique()}`,
    userId,
    identityId,
    provider: "op",
    deviceKey: "id:device",
    ip: client.ip,
    userAgent: client.userAgent,
    amr: ["fed"],
    risk,
    context: {
      deviceKey: "id:device",
      network: "192.0.2.0/24",
      geo: { country: "DE", latitude: 52.5, longitude: 13.4 },
    },
    methods: ["totp", "recovery_code"],
    pendingIdentity: null,
    createdAt: T,
    expiresAt: later(300),
    ...over,
  };
}

function complete(
  state: ChallengeState,
  spend: Extract<ChallengeDecision, { kind: "complete" }>["spend"],
  trustDevice: NewTrustedDevice | null = null,
): ChallengeDecision {
  const sessionId = `ses_${unique()}`;
  const at = later(10);
  return {
    kind: "complete",
    spend,
    session: {
      id: sessionId,
      userId: state.challenge.userId,
      provider: "op",
      amr: ["fed", "otp", "mfa"],
      client,
      createdAt: at,
      expiresAt: later(3600),
    },
    refreshToken: {
      id: `rtk_${unique()}`,
      sessionId,
      tokenHash: `h-${unique()}`,
      createdAt: at,
      expiresAt: later(3600),
    },
    seen: { ...state.challenge.context, trustedDeviceId: null },
    trustDevice,
    audit: { type: "signin.succeeded", at, userId: state.challenge.userId, client, detail: { mfa: true } },
  };
}

const reject = (kill = false): ChallengeDecision => ({
  kind: "reject",
  kill,
  audit: { type: "mfa.verify_failed", at: later(5), client },
});

for (const kind of testDatabaseKinds()) {
  describe(`MFA store on ${kind.dialect}`, kind.suiteOptions, () => {
    const db = useMigratedDatabase(kind);

    /** A user who signed in once (session) and has a confirmed TOTP factor and two recovery codes. */
    async function enrolledUser() {
      const accounts = createAccountStore(db().client);
      const mfa = createMfaStore(db().client);
      const w = newUser();
      await accounts.commitSignin(sessionWrite(w));
      const factorId = `mfa_${unique()}`;
      await mfa.savePendingTotp(
        { id: factorId, userId: w.user.id, secretEnc: "sealed", createdAt: T },
        { type: "mfa.totp_enrollment_started", at: T, userId: w.user.id, client },
      );
      expect(
        await mfa.confirmTotp(
          factorId,
          100,
          [
            { id: `rcv_${unique()}`, codeHash: "rc-1" },
            { id: `rcv_${unique()}`, codeHash: "rc-2" },
          ],
          T,
          "ses_none",
          { type: "mfa.totp_enrolled", at: T, userId: w.user.id, client },
        ),
      ).toBe(true);
      return { w, userId: w.user.id, identityId: w.identity.id, factorId, accounts, mfa };
    }

    async function openChallenge(u: Awaited<ReturnType<typeof enrolledUser>>, over: Partial<NewChallenge> = {}) {
      const challenge = newChallenge(u.userId, u.identityId, over);
      await u.accounts.commitSignin({
        account: { kind: "existing", userId: u.userId, identityId: u.identityId },
        at: later(1),
        challenge,
        audit: { type: "signin.mfa_required", at: later(1), userId: u.userId, client },
      });
      return challenge;
    }

    it("a challenged sign-in stores the challenge and the audit record, but no session, no token, no touch", async () => {
      const u = await enrolledUser();
      const before = {
        sessions: await db().client.session.count({ where: { userId: u.userId } }),
        tokens: await db().client.refreshToken.count(),
        user: await db().client.user.findUniqueOrThrow({ where: { id: u.userId } }),
      };
      const challenge = await openChallenge(u);
      expect(await db().client.session.count({ where: { userId: u.userId } })).toBe(before.sessions);
      expect(await db().client.refreshToken.count()).toBe(before.tokens);
      const user = await db().client.user.findUniqueOrThrow({ where: { id: u.userId } });
      expect(user.lastSigninAt).toEqual(before.user.lastSigninAt);
      const row = await db().client.mfaChallenge.findUniqueOrThrow({ where: { id: challenge.id } });
      expect(row).toMatchObject({
        tokenHash: challenge.tokenHash,
        attempts: 0,
        consumedAt: null,
        deviceKey: "id:device",
      });
      // The raw device id is stored nowhere.
      expect(row).not.toHaveProperty("deviceId");
      expect(JSON.stringify(row)).not.toContain("dev-1");
      expect(JSON.parse(row.methods)).toEqual(["totp", "recovery_code"]);
      expect(await db().client.auditEvent.count({ where: { userId: u.userId, type: "signin.mfa_required" } })).toBe(1);
    });

    it("a challenged first sign-in creates the user and identity with the challenge, atomically", async () => {
      const accounts = createAccountStore(db().client);
      const w = newUser();
      const challenge = newChallenge(w.user.id, w.identity.id);
      const user = await accounts.commitSignin({
        account: w,
        at: T,
        challenge,
        audit: { type: "signin.mfa_required", at: T, userId: w.user.id, client },
      });
      expect(user.id).toBe(w.user.id);
      expect((await db().client.user.findUniqueOrThrow({ where: { id: w.user.id } })).lastSigninAt).toBeNull();
      expect(await db().client.identity.count({ where: { id: w.identity.id } })).toBe(1);
      expect(await db().client.session.count({ where: { userId: w.user.id } })).toBe(0);
    });

    it("signinHistory: devices, networks, countries, last location, failures and methods", async () => {
      const accounts = createAccountStore(db().client);
      const mfa = createMfaStore(db().client);
      const w = newUser();
      const userId = w.user.id;
      const empty = await mfa.signinHistory(userId, {
        deviceKey: "id:a",
        network: "n1",
        failuresSince: T,
        trustedDevice: null,
      });
      expect(empty).toMatchObject({
        lastSigninAt: null,
        hasHistory: false,
        deviceKnown: false,
        trustedDevice: null,
        networkKnown: false,
        methods: [],
      });

      await accounts.commitSignin(
        sessionWrite(w, T, {
          deviceKey: "id:a",
          network: "n1",
          geo: { country: "DE", latitude: 52.5, longitude: 13.4 },
        }),
      );
      await accounts.commitSignin(
        sessionWrite({ kind: "existing", userId, identityId: w.identity.id }, later(60), {
          deviceKey: "ua:b",
          network: "n2",
          geo: { country: "FR", latitude: null, longitude: null },
        }),
      );
      // As the audit log writes them (prisma-rows.ts auditRow: a failure carries its counted user).
      const failure = (type: string, at: Date) =>
        db().client.auditEvent.create({ data: auditRow({ type, at, userId, client }) });
      await failure("mfa.verify_failed", later(70));
      await failure("signin.failed", T);

      const h = await mfa.signinHistory(userId, {
        deviceKey: "id:a",
        network: "n1",
        failuresSince: later(30),
        trustedDevice: null,
      });
      expect(h).toMatchObject({
        lastSigninAt: later(60),
        hasHistory: true,
        deviceKnown: true,
        trustedDevice: null,
        networkKnown: true,
        recentFailures: 1,
        methods: [],
        // The last sign-in GeoIP could place (n2 had no coordinates).
        lastLocation: { at: T, latitude: 52.5, longitude: 13.4 },
      });
      expect(h.countries.sort()).toEqual(["DE", "FR"]);
      const other = await mfa.signinHistory(userId, {
        deviceKey: "id:zzz",
        network: "n9",
        failuresSince: T,
        trustedDevice: null,
      });
      expect(other).toMatchObject({ deviceKnown: false, networkKnown: false, recentFailures: 2 });

      // A device credential is found for its own user only (by hash; the Prisma read folds it into the user's).
      const expiresAt = later(86400);
      await db().client.trustedDevice.create({
        data: {
          id: `tdv_${unique()}`,
          userId,
          credentialHash: "tdc-h1",
          label: null,
          createdAt: T,
          lastUsedAt: T,
          expiresAt,
        },
      });
      expect(
        (await mfa.signinHistory(userId, { deviceKey: null, network: null, failuresSince: T, trustedDevice: "tdc-h1" }))
          .trustedDevice,
      ).toEqual({ id: expect.stringMatching(/^tdv_/), expiresAt });
      const stranger = newUser();
      await accounts.commitSignin(sessionWrite(stranger, T, { deviceKey: null, network: null, geo: null }));
      expect(
        (
          await mfa.signinHistory(stranger.user.id, {
            deviceKey: null,
            network: null,
            failuresSince: T,
            trustedDevice: "tdc-h1",
          })
        ).trustedDevice,
      ).toBeNull();
    });

    it("methods: a confirmed TOTP, then recovery codes beside it", async () => {
      const u = await enrolledUser();
      expect(
        (await u.mfa.signinHistory(u.userId, { deviceKey: null, network: null, failuresSince: T, trustedDevice: null }))
          .methods,
      ).toEqual(["totp", "recovery_code"]);
      expect(await u.mfa.countRecoveryCodes(u.userId)).toBe(2);
    });

    it("verifyChallenge counts every attempt atomically and hands the state to decide", async () => {
      const u = await enrolledUser();
      const challenge = await openChallenge(u);
      const seen: ChallengeState[] = [];
      for (let i = 0; i < 3; i++) {
        const { decision, user } = await u.mfa.verifyChallenge(
          challenge.tokenHash,
          later(5),
          (s) => (seen.push(s!), reject()),
        );
        expect(decision.kind).toBe("reject");
        expect(user).toBeNull();
      }
      expect(seen.map((s) => s.challenge.attempts)).toEqual([1, 2, 3]);
      expect(seen[0]).toMatchObject({
        challenge: {
          id: challenge.id,
          userId: u.userId,
          deviceKey: "id:device",
          methods: ["totp", "recovery_code"],
          risk,
          consumedReason: null,
        },
        user: { id: u.userId },
        totp: { id: u.factorId, lastUsedStep: 100 },
      });
      expect(seen[0]!.recoveryCodes.map((r) => r.codeHash).sort()).toEqual(["rc-1", "rc-2"]);
      expect(
        await db().client.auditEvent.count({
          where: { type: "mfa.verify_failed", requestId: "req-mfa", at: later(5) },
        }),
      ).toBeGreaterThanOrEqual(3);
    });

    it("purges challenges that expired before the given time, and only those", async () => {
      const store = createMfaStore(db().client);
      const total = await db().client.mfaChallenge.count();
      expect(total).toBeGreaterThan(0); // the tests above left some
      expect(await store.purgeExpiredChallenges(new Date("1970-01-02T00:00:00Z"))).toBe(0);
      expect(await db().client.mfaChallenge.count()).toBe(total);
      expect(await store.purgeExpiredChallenges(new Date("2100-01-01T00:00:00Z"))).toBe(total);
      expect(await db().client.mfaChallenge.count()).toBe(0);
    });

    it("an unknown token gets null", async () => {
      const mfa = createMfaStore(db().client);
      let got: ChallengeState | null | undefined;
      await mfa.verifyChallenge("no-such-hash", T, (s) => ((got = s), reject()));
      expect(got).toBeNull();
    });

    it("kill marks the challenge exhausted; later calls see it dead and count nothing", async () => {
      const u = await enrolledUser();
      const challenge = await openChallenge(u);
      await u.mfa.verifyChallenge(challenge.tokenHash, later(5), () => reject(true));
      let after: ChallengeState | null = null;
      await u.mfa.verifyChallenge(challenge.tokenHash, later(6), (s) => ((after = s), reject()));
      expect(after!.challenge).toMatchObject({ consumedReason: "exhausted", attempts: 1 });
    });

    it("complete: spends the TOTP step, opens the session, remembers and trusts the device, once", async () => {
      const u = await enrolledUser();
      const challenge = await openChallenge(u);
      const trust = {
        id: `tdv_${unique()}`,
        userId: u.userId,
        credentialHash: `tdc-${unique()}`,
        label: "firefox/linux",
        createdAt: later(10),
        expiresAt: later(30 * 86400),
      };
      let decision: ChallengeDecision | undefined;
      const result = await u.mfa.verifyChallenge(
        challenge.tokenHash,
        later(10),
        (s) => (decision = complete(s!, { kind: "totp", factorId: u.factorId, step: 101 }, trust)),
      );
      expect(result.user).toMatchObject({ id: u.userId, passwordChangedAt: null });
      const d = decision as Extract<ChallengeDecision, { kind: "complete" }>;
      const session = await db().client.session.findUniqueOrThrow({
        where: { id: d.session.id },
        include: { refreshTokens: true },
      });
      expect(session).toMatchObject({ userId: u.userId, identityId: u.identityId, amr: '["fed","otp","mfa"]' });
      expect(session.refreshTokens).toHaveLength(1);
      expect(await db().client.mfaFactor.findUniqueOrThrow({ where: { id: u.factorId } })).toMatchObject({
        lastUsedStep: 101,
      });
      expect(await db().client.mfaChallenge.findUniqueOrThrow({ where: { id: challenge.id } })).toMatchObject({
        consumedReason: "completed",
        consumedAt: later(10),
      });
      expect(
        await db().client.userDevice.findUniqueOrThrow({
          where: { userId_deviceKey: { userId: u.userId, deviceKey: "id:device" } },
        }),
      ).toMatchObject({ lastSeenAt: later(10) });
      expect(await db().client.trustedDevice.findUniqueOrThrow({ where: { id: trust.id } })).toEqual({
        ...trust,
        lastUsedAt: later(10),
      });
      expect((await db().client.user.findUniqueOrThrow({ where: { id: u.userId } })).lastSigninAt).toEqual(later(10));

      // Replayed: the state says completed; nothing more is written.
      let replay: ChallengeState | null = null;
      await u.mfa.verifyChallenge(challenge.tokenHash, later(11), (s) => ((replay = s), reject()));
      expect(replay!.challenge.consumedReason).toBe("completed");
      expect(await db().client.session.count({ where: { userId: u.userId } })).toBe(2);

      // A plain sign-in later does not end the trust.
      await u.accounts.commitSignin(
        sessionWrite({ kind: "existing", userId: u.userId, identityId: u.identityId }, later(20), {
          deviceKey: "id:device",
          network: null,
          geo: null,
        }),
      );
      expect(await db().client.trustedDevice.count({ where: { userId: u.userId } })).toBe(1);
    });

    it("a link by e-mail waiting for MFA is written only when the challenge completes", async () => {
      const u = await enrolledUser();
      const pending = {
        id: `idn_${unique()}`,
        issuer: "https://second.example",
        subject: `s2-${unique()}`,
        provider: "second",
        email: null,
        emailVerified: false,
      };
      const challenge = newChallenge(u.userId, pending.id, { pendingIdentity: pending });
      await u.accounts.commitSignin({
        account: { kind: "link", userId: u.userId, identity: pending },
        at: later(1),
        challenge,
        audit: { type: "signin.mfa_required", at: later(1), userId: u.userId, client },
      });
      // Not linked while the second factor is outstanding (a failed MFA leaves no link).
      expect(await db().client.identity.count({ where: { subject: pending.subject } })).toBe(0);
      expect(await u.accounts.findByIdentity(pending.issuer, pending.subject)).toBeNull();

      let decision: ChallengeDecision | undefined;
      await u.mfa.verifyChallenge(
        challenge.tokenHash,
        later(10),
        (st) => (decision = complete(st!, { kind: "totp", factorId: u.factorId, step: 101 })),
      );
      expect((await u.accounts.findByIdentity(pending.issuer, pending.subject))?.user.id).toBe(u.userId);
      const d = decision as Extract<ChallengeDecision, { kind: "complete" }>;
      expect(await db().client.session.findUniqueOrThrow({ where: { id: d.session.id } })).toMatchObject({
        identityId: pending.id,
      });
    });

    it("a pending link completes as a conflict when the identity went to another user meanwhile", async () => {
      const u = await enrolledUser();
      const other = await enrolledUser();
      const pending = {
        id: `idn_${unique()}`,
        issuer: "https://second.example",
        subject: `s3-${unique()}`,
        provider: "second",
        email: null,
        emailVerified: false,
      };
      const challenge = newChallenge(u.userId, pending.id, { pendingIdentity: pending });
      await u.accounts.commitSignin({
        account: { kind: "link", userId: u.userId, identity: pending },
        at: later(1),
        challenge,
        audit: { type: "signin.mfa_required", at: later(1), userId: u.userId, client },
      });
      await other.accounts.commitSignin(
        sessionWrite({ kind: "link", userId: other.userId, identity: { ...pending, id: `idn_${unique()}` } }),
      );
      const sessions = await db().client.session.count({ where: { userId: u.userId } });
      const err = await u.mfa
        .verifyChallenge(challenge.tokenHash, later(10), (st) =>
          complete(st!, { kind: "totp", factorId: u.factorId, step: 101 }),
        )
        .catch((e: unknown) => e);
      expect((err as DomainError).code).toBe("account_exists");
      expect(await db().client.session.count({ where: { userId: u.userId } })).toBe(sessions);
      expect((await u.accounts.findByIdentity(pending.issuer, pending.subject))?.user.id).toBe(other.userId);
    });

    it("a TOTP step that is not newer than the last is refused, and the whole completion rolls back", async () => {
      const u = await enrolledUser();
      const challenge = await openChallenge(u);
      const sessions = await db().client.session.count();
      const err = await u.mfa
        .verifyChallenge(challenge.tokenHash, later(10), (s) =>
          complete(s!, { kind: "totp", factorId: u.factorId, step: 100 }),
        )
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DomainError);
      expect((err as DomainError).code).toBe("mfa_code_invalid");
      expect(await db().client.session.count()).toBe(sessions);
      expect(await db().client.mfaChallenge.findUniqueOrThrow({ where: { id: challenge.id } })).toMatchObject({
        consumedAt: null,
      });
    });

    it("a recovery code completes once", async () => {
      const u = await enrolledUser();
      const [first, second] = [await openChallenge(u), await openChallenge(u)];
      const spend = async (c: NewChallenge) => {
        let codeId = "";
        return u.mfa.verifyChallenge(c.tokenHash, later(10), (s) => {
          codeId = s!.recoveryCodes.find((r) => r.codeHash === "rc-1")?.id ?? codeId;
          return complete(s!, { kind: "recovery_code", codeId: codeId || "missing" });
        });
      };
      const codeRow = await db().client.recoveryCode.findFirstOrThrow({
        where: { userId: u.userId, codeHash: "rc-1" },
      });
      expect((await spend(first)).user?.id).toBe(u.userId);
      expect(await u.mfa.countRecoveryCodes(u.userId)).toBe(1);
      // The code is gone from the state; forcing its id anyway is refused by the store.
      const err = await u.mfa
        .verifyChallenge(second.tokenHash, later(11), (s) =>
          complete(s!, { kind: "recovery_code", codeId: codeRow.id }),
        )
        .catch((e: unknown) => e);
      expect((err as DomainError).code).toBe("mfa_code_invalid");
    });

    it("of concurrent completions of one challenge exactly one wins", async () => {
      const u = await enrolledUser();
      const challenge = await openChallenge(u);
      let step = 200;
      const attempt = () =>
        u.mfa
          .verifyChallenge(challenge.tokenHash, later(10), (s) =>
            s!.challenge.consumedReason === null
              ? complete(s!, { kind: "totp", factorId: u.factorId, step: step++ })
              : reject(),
          )
          .then(
            (r) => r.decision.kind,
            (e: unknown) => (e as DomainError).code,
          );
      const outcomes = await Promise.all([attempt(), attempt(), attempt(), attempt()]);
      expect(outcomes.filter((o) => o === "complete")).toHaveLength(1);
      expect(await db().client.session.count({ where: { userId: u.userId } })).toBe(2);
    });

    describe("factors", () => {
      it("a pending TOTP is replaced by a new enrollment; a confirmed one refuses it", async () => {
        const accounts = createAccountStore(db().client);
        const mfa = createMfaStore(db().client);
        const w = newUser();
        await accounts.commitSignin(sessionWrite(w));
        const audit = { type: "mfa.totp_enrollment_started", at: T, userId: w.user.id, client };
        await mfa.savePendingTotp({ id: "mfa_p1", userId: w.user.id, secretEnc: "s1", createdAt: T }, audit);
        await mfa.savePendingTotp({ id: "mfa_p2", userId: w.user.id, secretEnc: "s2", createdAt: T }, audit);
        expect(await mfa.findTotp(w.user.id)).toMatchObject({ id: "mfa_p2", confirmedAt: null, secretEnc: "s2" });
        expect(await mfa.confirmTotp("mfa_p1", 5, [], T, "ses_none", audit)).toBe(false);
        expect(
          await mfa.confirmTotp("mfa_p2", 5, [{ id: `rcv_${unique()}`, codeHash: "x" }], later(1), "ses_none", audit),
        ).toBe(true);
        expect(await mfa.confirmTotp("mfa_p2", 6, [], later(1), "ses_none", audit)).toBe(false);
        const err = await mfa
          .savePendingTotp({ id: "mfa_p3", userId: w.user.id, secretEnc: "s3", createdAt: T }, audit)
          .catch((e: unknown) => e);
        expect((err as DomainError).code).toBe("totp_already_enrolled");
        expect(await mfa.findTotp(w.user.id)).toMatchObject({ id: "mfa_p2", confirmedAt: later(1), lastUsedStep: 5 });
      });

      it("withTotpStep refuses a replayed step, replaces recovery codes, disables", async () => {
        const u = await enrolledUser();
        const audit = { type: "mfa.x", at: T, userId: u.userId, client };
        expect(await u.mfa.withTotpStep(u.factorId, 100, { kind: "disable" }, T, audit)).toBe(false);
        expect(
          await u.mfa.withTotpStep(
            u.factorId,
            101,
            { kind: "replace_recovery_codes", codes: [{ id: `rcv_${unique()}`, codeHash: "new" }] },
            T,
            audit,
          ),
        ).toBe(true);
        expect(
          (await db().client.recoveryCode.findMany({ where: { userId: u.userId } })).map((r) => r.codeHash),
        ).toEqual(["new"]);
        expect(await u.mfa.withTotpStep(u.factorId, 101, { kind: "disable" }, T, audit)).toBe(false);
        await db().client.userDevice.create({
          data: { userId: u.userId, deviceKey: "id:trusted", firstSeenAt: T, lastSeenAt: T },
        });
        await db().client.trustedDevice.create({
          data: {
            id: `tdv_${unique()}`,
            userId: u.userId,
            credentialHash: `tdc-${unique()}`,
            label: null,
            createdAt: T,
            lastUsedAt: T,
            expiresAt: later(3600),
          },
        });
        expect(await u.mfa.withTotpStep(u.factorId, 102, { kind: "disable" }, T, audit)).toBe(true);
        expect(await u.mfa.findTotp(u.userId)).toBeNull();
        expect(await u.mfa.countRecoveryCodes(u.userId)).toBe(0);
        // Trust earned with the factor ends with it; the device itself stays known.
        expect(await db().client.trustedDevice.count({ where: { userId: u.userId } })).toBe(0);
        expect(await db().client.userDevice.count({ where: { userId: u.userId, deviceKey: "id:trusted" } })).toBe(1);
      });

      it("counts wrong second-factor codes in a window, wherever they were tried", async () => {
        const u = await enrolledUser();
        // Rows as the audit log writes them (prisma-rows.ts auditRow, which gives a failure its counted user).
        const event = (at: Date, type: string, code?: string) =>
          db().client.auditEvent.create({
            data: auditRow({ type, at, userId: u.userId, client, ...(code === undefined ? {} : { code }) }),
          });
        await event(T, "mfa.code_failed");
        await event(later(100), "mfa.code_failed");
        await event(later(110), "mfa.verify_failed", "mfa_code_invalid");
        await event(later(120), "mfa.challenge_exhausted", "challenge_exhausted");
        // Not wrong codes: an expired challenge, a throttled call.
        await event(later(130), "mfa.verify_failed", "challenge_expired");
        await event(later(140), "mfa.verify_failed", "rate_limited");
        expect(await u.mfa.countCodeFailures(u.userId, later(50))).toBe(3);
        const challenge = await openChallenge(u);
        let state: ChallengeState | null = null;
        await u.mfa.verifyChallenge(challenge.tokenHash, later(150), (s) => ((state = s), reject()), later(50));
        expect(state!.recentCodeFailures).toBe(3);
      });
    });
  });
}
