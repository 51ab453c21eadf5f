import { DomainError } from "../core/errors.ts";
import type { UserWithPassword } from "../core/model.ts";
import type { ChallengeDecision, ChallengeState } from "../core/ports/mfa.ts";
import { budgetFailures, lockUser } from "./attempt-budget-store.ts";
import type { Db } from "./database.ts";
import { storeError } from "./prisma-errors.ts";
import {
  auditRow,
  challengeFromRow,
  seenWrites,
  sessionRow,
  userFromRow,
  userSelect,
  withPassword,
} from "./prisma-rows.ts";

type Tx = Parameters<Parameters<Db["$transaction"]>[0]>[0];

/**
 * VerifyMfa's one transaction (MfaStore.verifyChallenge): the attempt counted (and the challenge
 * locked), the state read, the core's decision applied: a rejection recorded, or the code spent,
 * the challenge completed, a held-back e-mail link written and the session opened.
 */
export async function verifyChallenge(
  db: Db,
  tokenHash: string,
  now: Date,
  decide: (state: ChallengeState | null) => ChallengeDecision,
  failuresSince: Date | undefined,
): Promise<{ decision: ChallengeDecision; user: UserWithPassword | null }> {
  try {
    return await db.$transaction(async (tx) => {
      // Counting the attempt is also the lock: concurrent verifications of one challenge
      // queue here (PostgreSQL row lock; SQLite writer lock) and each sees the last one's result.
      await tx.mfaChallenge.updateMany({
        where: { tokenHash, consumedAt: null },
        data: { attempts: { increment: 1 } },
      });
      const row = await findChallengeRow(tx, tokenHash);
      const decision = decide(row === null ? null : await challengeState(tx, row, failuresSince));
      if (decision.kind === "reject") {
        await writeRejection(tx, row, decision, now);
        return { decision, user: null };
      }
      if (row === null) throw new Error("a decision to complete needs a challenge");
      await spendCode(tx, decision.spend, now);
      const done = await tx.mfaChallenge.updateMany({
        where: { id: row.id, consumedAt: null },
        data: { consumedAt: now, consumedReason: "completed" },
      });
      if (done.count !== 1)
        throw new DomainError("challenge_invalid", "this challenge was already used; sign in again");
      await linkPendingIdentity(tx, row, now);
      return { decision, user: await openCompletedSession(tx, row, decision, now) };
    });
  } catch (e) {
    throw storeError(e);
  }
}

type ChallengeRow = NonNullable<Awaited<ReturnType<typeof findChallengeRow>>>;
type Rejection = Extract<ChallengeDecision, { kind: "reject" }>;
type Completion = Extract<ChallengeDecision, { kind: "complete" }>;

function findChallengeRow(tx: Tx, tokenHash: string) {
  return tx.mfaChallenge.findUnique({
    where: { tokenHash },
    include: { user: { select: userSelect } },
  });
}

/** What the decision needs of a presented challenge: its user's confirmed TOTP factor, unused recovery codes, recent wrong codes. */
async function challengeState(tx: Tx, row: ChallengeRow, failuresSince: Date | undefined): Promise<ChallengeState> {
  // The user's budget of wrong codes is counted under the user's lock, and this
  // transaction's failure record is written under it too: concurrent answers to
  // different challenges of one user cannot all see the same count.
  await lockUser(tx, row.userId);
  const { user, ...challenge } = row;
  const totp = await tx.mfaFactor.findFirst({
    where: { userId: row.userId, type: "totp", confirmedAt: { not: null } },
    select: { id: true, userId: true, secretEnc: true, confirmedAt: true, lastUsedStep: true },
  });
  const recoveryCodes = await tx.recoveryCode.findMany({
    where: { userId: row.userId, usedAt: null },
    select: { id: true, codeHash: true },
  });
  const recentCodeFailures =
    failuresSince === undefined
      ? 0
      : await tx.auditEvent.count({ where: budgetFailures("second_factor_code", row.userId, failuresSince) });
  return { challenge: challengeFromRow(challenge), user: userFromRow(user), totp, recoveryCodes, recentCodeFailures };
}

/** A refused answer: the challenge killed when the decision says so, and its audit record. */
async function writeRejection(tx: Tx, row: ChallengeRow | null, decision: Rejection, now: Date): Promise<void> {
  if (decision.kill && row !== null) {
    await tx.mfaChallenge.updateMany({
      where: { id: row.id, consumedAt: null },
      data: { consumedAt: now, consumedReason: "exhausted" },
    });
  }
  if (decision.audit !== null) await tx.auditEvent.create({ data: auditRow(decision.audit), select: { id: true } });
}

/** Spends the code: conditional updates, so a code is good once even across challenges. */
async function spendCode(tx: Tx, spend: Completion["spend"], now: Date): Promise<void> {
  if (spend.kind === "webauthn") {
    // The ceremony once, and the counter forward only (both 0: the authenticator keeps none).
    const ceremony = await tx.webauthnCeremony.updateMany({
      where: { id: spend.ceremonyId, consumedAt: null, expiresAt: { gt: now } },
      data: { consumedAt: now },
    });
    const moved = await tx.webauthnCredential.updateMany({
      where: {
        id: spend.passkeyId,
        flaggedAt: null,
        ...(spend.signCount === 0 ? { signCount: 0 } : { signCount: { lt: spend.signCount } }),
      },
      data: { signCount: spend.signCount, backedUp: spend.backedUp, lastUsedAt: now },
    });
    if (ceremony.count !== 1 || moved.count !== 1) {
      throw new DomainError("webauthn_challenge_invalid", "this passkey answer was used already; start again");
    }
    return;
  }
  const spent =
    spend.kind === "totp"
      ? await tx.mfaFactor.updateMany({
          where: {
            id: spend.factorId,
            confirmedAt: { not: null },
            OR: [{ lastUsedStep: null }, { lastUsedStep: { lt: spend.step } }],
          },
          data: { lastUsedStep: spend.step },
        })
      : await tx.recoveryCode.updateMany({ where: { id: spend.codeId, usedAt: null }, data: { usedAt: now } });
  if (spent.count !== 1) {
    throw new DomainError("mfa_code_invalid", "the code is not valid (wrong, expired or already used)");
  }
}

/**
 * The e-mail link this sign-in asked for, now that the second factor is done. Another
 * completion may have made it already: fine for this user, a conflict for anyone else.
 */
async function linkPendingIdentity(tx: Tx, row: ChallengeRow, now: Date): Promise<void> {
  const pending = challengeFromRow(row).pendingIdentity;
  if (pending === null) return;
  const linked = await tx.identity.upsert({
    where: { issuer_subject: { issuer: pending.issuer, subject: pending.subject } },
    create: { ...pending, userId: row.userId, createdAt: now, lastSigninAt: now },
    update: {},
    select: { userId: true },
  });
  if (linked.userId !== row.userId) {
    throw new DomainError("account_exists", "this identity was linked to another account meanwhile; sign in again");
  }
}

/** The completed sign-in's writes: session, refresh token, what was seen, device trust, the user's last sign-in, audit. */
async function openCompletedSession(tx: Tx, row: ChallengeRow, decision: Completion, now: Date) {
  const { session, refreshToken } = decision;
  await tx.session.create({ data: sessionRow(session, row.identityId), select: { id: true } });
  await tx.refreshToken.create({ data: refreshToken, select: { id: true } });
  for (const op of seenWrites(tx, row.userId, decision.seen, now)) await op;
  if (decision.trustDevice !== null) {
    await tx.trustedDevice.create({ data: { ...decision.trustDevice, lastUsedAt: now }, select: { id: true } });
  }
  // The identity may have been unlinked meanwhile: touching it is best effort.
  await tx.identity.updateMany({ where: { id: row.identityId, userId: row.userId }, data: { lastSigninAt: now } });
  const user = await tx.user.update({
    where: { id: row.userId },
    data: { lastSigninAt: now },
    select: { ...userSelect, password: { select: { changedAt: true } } },
  });
  await tx.auditEvent.create({ data: auditRow(decision.audit), select: { id: true } });
  const { password, ...plain } = user;
  return withPassword(userFromRow(plain), password);
}
