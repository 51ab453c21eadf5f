import { DomainError } from "../core/errors.ts";
import type { MfaStore } from "../core/ports/mfa.ts";
import type { SigninHistoryReader } from "../core/ports/risk-history.ts";
import type { MfaMethod } from "../core/risk.ts";
import { auditRow, challengeFromRow, userFromRow, userSelect } from "./prisma-rows.ts";
import type { Db } from "./database.ts";
import { guarded, storeError, uniqueViolationFields } from "./prisma-errors.ts";
import { FAILURE_TYPES } from "./user-failures.ts";
import { budgetFailures } from "./attempt-budget-store.ts";
import { verifyChallenge } from "./mfa-challenge-verification.ts";

/** The audit records of wrong second-factor codes (MfaStore.countCodeFailures), reservations included. */
const codeFailures = (userId: string, since: Date) => budgetFailures("second_factor_code", userId, since);

/**
 * Marks a session as having completed a second factor now: `mfa_at`, and `amr` gains `methods`.
 * Only a live session of `userId`; null when there is none.
 */
async function markSecondFactor(tx: Tx, sessionId: string, userId: string, methods: readonly string[], now: Date) {
  const row = await tx.session.findFirst({
    where: { id: sessionId, userId, revokedAt: null, expiresAt: { gt: now } },
    select: { amr: true, provider: true, authTime: true, createdAt: true },
  });
  if (row === null) return null;
  const amr = [...new Set([...(JSON.parse(row.amr) as string[]), ...methods])];
  await tx.session.update({
    where: { id: sessionId },
    data: { mfaAt: now, amr: JSON.stringify(amr) },
    select: { id: true },
  });
  return { amr, provider: row.provider, authTime: row.authTime ?? row.createdAt };
}

/** Thrown inside a transaction to roll it back: the session to mark is gone. */
class SessionGone extends Error {}
/** Thrown inside a transaction to roll it back: a part of the spend failed. */
class NotSpent extends Error {}

type Tx = Parameters<Parameters<Db["$transaction"]>[0]>[0];

/**
 * How much history one sign-in reads: the most recently seen networks and devices. A network or
 * device not among them counts as new again (a bounded read on every sign-in, by design).
 */
const RECENT_NETWORKS = 200;
const RECENT_DEVICES = 200;

/** Challenges, factors and sign-in history, on Prisma. */
export function createMfaStore(db: Db): MfaStore & SigninHistoryReader {
  const findTotp = (userId: string) =>
    guarded(() =>
      db.mfaFactor.findUnique({
        where: { userId_type: { userId, type: "totp" } },
        select: { id: true, userId: true, secretEnc: true, confirmedAt: true, lastUsedStep: true },
      }),
    );

  return {
    async purgeExpiredChallenges(before) {
      const { count } = await guarded(() => db.mfaChallenge.deleteMany({ where: { expiresAt: { lt: before } } }));
      return count;
    },

    async signinHistory(userId, query) {
      return guarded(async () => {
        // Four statements, run together: the user with its factor state, its recent devices, its
        // recent networks, and its recent failures. Everything else is derived here. (Each extra
        // read is paid on every returning sign-in; see `npm run bench`.)
        const [user, devices, networks, failures] = await Promise.all([
          db.user.findUnique({
            where: { id: userId },
            select: {
              lastSigninAt: true,
              // The presented device credential, bound to this user (folded into this read).
              trustedDevices: {
                where: { credentialHash: query.trustedDevice ?? "" },
                select: { id: true, expiresAt: true },
                take: 1,
              },
              mfaFactors: { where: { type: "totp" }, select: { confirmedAt: true } },
              _count: {
                select: {
                  recoveryCodes: { where: { usedAt: null } },
                  webauthnCredentials: { where: { flaggedAt: null } },
                },
              },
            },
          }),
          db.userDevice.findMany({
            where: { userId },
            orderBy: { lastSeenAt: "desc" },
            take: RECENT_DEVICES,
            select: { deviceKey: true },
          }),
          db.userNetwork.findMany({
            where: { userId },
            orderBy: { lastSeenAt: "desc" },
            take: RECENT_NETWORKS,
            select: { network: true, country: true, latitude: true, longitude: true, lastSeenAt: true },
          }),
          db.auditEvent.count({
            where: { countedUserId: userId, type: { in: [...FAILURE_TYPES] }, at: { gte: query.failuresSince } },
          }),
        ]);
        const device = query.deviceKey === null ? null : (devices.find((d) => d.deviceKey === query.deviceKey) ?? null);
        const network = query.network === null ? null : (networks.find((n) => n.network === query.network) ?? null);
        const countries = [...new Set(networks.flatMap((n) => (n.country === null ? [] : [n.country])))];
        const located = networks.find((n) => n.latitude !== null && n.longitude !== null);
        const last =
          located === undefined
            ? undefined
            : { latitude: located.latitude, longitude: located.longitude, lastSeenAt: located.lastSeenAt };
        const totp = user?.mfaFactors[0] ?? null;
        const codes = user?._count.recoveryCodes ?? 0;
        const anyDevice = devices.length > 0 ? devices[0] : null;
        const methods: MfaMethod[] = [];
        if (totp?.confirmedAt != null) methods.push("totp");
        // Recovery codes back up an authenticator; without one they complete nothing.
        if (methods.length > 0 && codes > 0) methods.push("recovery_code");
        if ((user?._count.webauthnCredentials ?? 0) > 0) methods.push("webauthn");
        return {
          lastSigninAt: user?.lastSigninAt ?? null,
          deviceKnown: device !== null,
          trustedDevice: query.trustedDevice === null ? null : (user?.trustedDevices[0] ?? null),
          hasHistory: (user?.lastSigninAt ?? null) !== null || anyDevice !== null,
          networkKnown: network !== null,
          countries,
          lastLocation:
            last === undefined ? null : { at: last.lastSeenAt, latitude: last.latitude!, longitude: last.longitude! },
          recentFailures: failures,
          methods,
        };
      });
    },

    verifyChallenge(tokenHash, now, decide, failuresSince) {
      return verifyChallenge(db, tokenHash, now, decide, failuresSince);
    },

    async findChallenge(tokenHash) {
      const row = await guarded(() => db.mfaChallenge.findUnique({ where: { tokenHash } }));
      return row === null ? null : challengeFromRow(row);
    },

    async findUser(userId) {
      const row = await guarded(() => db.user.findUnique({ where: { id: userId }, select: userSelect }));
      return row === null ? null : userFromRow(row);
    },

    findTotp,

    countRecoveryCodes(userId) {
      return guarded(() => db.recoveryCode.count({ where: { userId, usedAt: null } }));
    },

    countCodeFailures(userId, since) {
      return guarded(() => db.auditEvent.count({ where: codeFailures(userId, since) }));
    },

    async nthRecentCodeFailure(userId, since, n) {
      const row = await guarded(() =>
        db.auditEvent.findFirst({
          where: codeFailures(userId, since),
          orderBy: { at: "desc" },
          skip: n - 1,
          select: { at: true },
        }),
      );
      return row?.at ?? null;
    },

    async savePendingTotp(factor, audit) {
      try {
        await db.$transaction(async (tx) => {
          const existing = await tx.mfaFactor.findUnique({
            where: { userId_type: { userId: factor.userId, type: "totp" } },
            select: { confirmedAt: true },
          });
          if (existing?.confirmedAt != null) {
            throw new DomainError("totp_already_enrolled", "an authenticator is already enrolled; disable it first");
          }
          await tx.mfaFactor.deleteMany({ where: { userId: factor.userId, type: "totp", confirmedAt: null } });
          await tx.mfaFactor.create({ data: { ...factor, type: "totp" }, select: { id: true } });
          await tx.auditEvent.create({ data: auditRow(audit), select: { id: true } });
        });
      } catch (e) {
        // Two enrollments raced: the other one's pending factor stands.
        if (uniqueViolationFields(e) !== null) {
          throw new DomainError("totp_already_enrolled", "another enrollment is in progress; try again", { cause: e });
        }
        throw storeError(e);
      }
    },

    async confirmTotp(factorId, step, codes, now, sessionId, audit) {
      try {
        return await db.$transaction(async (tx) => {
          const confirmed = await tx.mfaFactor.updateMany({
            where: { id: factorId, confirmedAt: null },
            data: { confirmedAt: now, lastUsedStep: step },
          });
          if (confirmed.count !== 1) return false;
          const { userId } = await tx.mfaFactor.findUniqueOrThrow({
            where: { id: factorId },
            select: { userId: true },
          });
          await tx.recoveryCode.deleteMany({ where: { userId } });
          await tx.recoveryCode.createMany({ data: codes.map((c) => ({ ...c, userId, createdAt: now })) });
          await markSecondFactor(tx, sessionId, userId, ["otp", "mfa"], now);
          await tx.auditEvent.create({ data: auditRow(audit), select: { id: true } });
          return true;
        });
      } catch (e) {
        throw storeError(e);
      }
    },

    async stepUp(sessionId, userId, spend, methods, now, audit) {
      try {
        return await db.$transaction(async (tx) => {
          if (spend.kind === "webauthn") {
            // The ceremony once, only by the session that opened it; the counter forward only.
            const ceremony = await tx.webauthnCeremony.updateMany({
              where: {
                id: spend.ceremonyId,
                userId,
                sessionId,
                purpose: "step_up",
                consumedAt: null,
                expiresAt: { gt: now },
              },
              data: { consumedAt: now },
            });
            if (ceremony.count !== 1) return "not_spent" as const;
            const moved = await tx.webauthnCredential.updateMany({
              where: {
                id: spend.passkeyId,
                userId,
                flaggedAt: null,
                ...(spend.signCount === 0 ? { signCount: 0 } : { signCount: { lt: spend.signCount } }),
              },
              data: { signCount: spend.signCount, backedUp: spend.backedUp, lastUsedAt: now },
            });
            // Rolls the ceremony back too: nothing is written for an answer that does not count.
            if (moved.count !== 1) throw new NotSpent();
          } else {
            const spent =
              spend.kind === "totp"
                ? await tx.mfaFactor.updateMany({
                    where: {
                      id: spend.factorId,
                      userId,
                      confirmedAt: { not: null },
                      OR: [{ lastUsedStep: null }, { lastUsedStep: { lt: spend.step } }],
                    },
                    data: { lastUsedStep: spend.step },
                  })
                : await tx.recoveryCode.updateMany({
                    where: { userId, codeHash: spend.codeHash, usedAt: null },
                    data: { usedAt: now },
                  });
            if (spent.count < 1) return "not_spent" as const;
          }
          const session = await markSecondFactor(tx, sessionId, userId, methods, now);
          // Rolls the spend back: a code is not used up on a session that is gone.
          if (session === null) throw new SessionGone();
          await tx.auditEvent.create({ data: auditRow(audit), select: { id: true } });
          return session;
        });
      } catch (e) {
        if (e instanceof SessionGone) return "session_gone";
        if (e instanceof NotSpent) return "not_spent";
        throw storeError(e);
      }
    },

    async withTotpStep(factorId, step, change, now, audit) {
      try {
        return await db.$transaction(async (tx) => {
          const spent = await tx.mfaFactor.updateMany({
            where: {
              id: factorId,
              confirmedAt: { not: null },
              OR: [{ lastUsedStep: null }, { lastUsedStep: { lt: step } }],
            },
            data: { lastUsedStep: step },
          });
          if (spent.count !== 1) return false;
          const { userId } = await tx.mfaFactor.findUniqueOrThrow({
            where: { id: factorId },
            select: { userId: true },
          });
          await tx.recoveryCode.deleteMany({ where: { userId } });
          if (change.kind === "disable") {
            await tx.mfaFactor.delete({ where: { id: factorId }, select: { id: true } });
            // Trust earned with the factor ends with it: no device skips MFA on its strength.
            await tx.trustedDevice.deleteMany({ where: { userId } });
          } else {
            await tx.recoveryCode.createMany({ data: change.codes.map((c) => ({ ...c, userId, createdAt: now })) });
          }
          await tx.auditEvent.create({ data: auditRow(audit), select: { id: true } });
          return true;
        });
      } catch (e) {
        throw storeError(e);
      }
    },
  };
}
