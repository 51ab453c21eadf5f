import type { LinkedAccount } from "../core/model.ts";
import type { AuditLog, SigninFailureCounter } from "../core/ports/audit.ts";
import { SigninConflict, type AccountReader, type SigninWrite, type SigninWriter } from "../core/ports/signin.ts";
import type { Prisma } from "../../gen/prisma/sqlite/client.ts";
import type { SingleUsePurger } from "../core/ports/single-use.ts";
import type { Db } from "./database.ts";
import { guarded, storeError, uniqueViolationFields } from "./prisma-errors.ts";
import {
  auditRow,
  challengeCreate,
  seenWrites,
  sessionRow,
  userFromRow,
  type UserRow,
  userSelect,
  withPassword,
} from "./prisma-rows.ts";
import { expiredUsesBefore } from "../core/single-use.ts";

/** Reads when a user's local password was last set (the only column the policy needs). */
export function readPasswordChangedAt(db: Db, userId: string): Promise<{ changedAt: Date } | null> {
  return guarded(() => db.passwordCredential.findUnique({ where: { userId }, select: { changedAt: true } }));
}

/** Accounts and the sign-in transaction, on Prisma. */
export function createAccountStore(db: Db): AccountReader & SigninWriter {
  return {
    async findByIdentity(issuer, subject): Promise<LinkedAccount | null> {
      const row = await guarded(() =>
        db.identity.findUnique({
          where: { issuer_subject: { issuer, subject } },
          select: { id: true, user: { select: userSelect } },
        }),
      );
      return row === null ? null : { identityId: row.id, user: userFromRow(row.user) };
    },

    async findByVerifiedEmail(emailNormalized) {
      const rows = await guarded(() =>
        db.user.findMany({ where: { emailNormalized, emailVerified: true }, select: userSelect, take: 2 }),
      );
      return rows.map(userFromRow);
    },

    async commitSignin(write) {
      const { account, audit } = write;
      // Flat single-row writes: each is one statement (INSERT/UPDATE … RETURNING). Nested writes
      // would make Prisma add read-backs; a returning user's sign-in is 7 statements in one
      // transaction (5, plus the device and network upserts, native ON CONFLICT) plus the 2
      // account reads before it and the risk-history reads, run in parallel (measured with
      // `npm run bench`).
      const ops: Prisma.PrismaPromise<unknown>[] = [
        ...accountWrites(db, write),
        ...sessionOrChallengeWrites(db, write),
      ];
      ops.push(db.auditEvent.create({ data: auditRow(audit), select: { id: true } }));
      for (const use of write.uses ?? []) ops.push(db.usedIdToken.create({ data: use, select: { key: true } }));
      // The password policy needs the credential's change time. A new user has none; for an
      // existing one it is read beside the transaction, not in it: no added latency, and the
      // transaction stays flat (a nested select would add a read-back inside it).
      const credential = account.kind === "create" ? null : readPasswordChangedAt(db, account.userId);
      try {
        const [[user], changed] = await Promise.all([db.$transaction(ops), credential]);
        return withPassword(userFromRow(user as UserRow), changed);
      } catch (e) {
        throw signinConflictOf(e);
      }
    },
  };
}

/**
 * The account's writes, first in the sign-in's batch: the user (its row is the batch's first
 * answer) and the identity. A sign-in waiting for MFA creates or links the account, but touches
 * nothing else of it until the challenge completes (mfa-challenge-verification.ts): a failed MFA
 * leaves no trace of a sign-in.
 */
function accountWrites(db: Db, write: SigninWrite): Prisma.PrismaPromise<unknown>[] {
  const { account, at } = write;
  const challenge = "challenge" in write ? write.challenge : null;
  if (account.kind === "create") {
    return [
      db.user.create({
        data: { ...account.user, updatedAt: at, lastSigninAt: challenge === null ? at : null },
        select: userSelect,
      }),
      db.identity.create({
        data: { ...account.identity, userId: account.user.id, createdAt: at, lastSigninAt: at },
        select: { id: true },
      }),
    ];
  }
  const ops: Prisma.PrismaPromise<unknown>[] = [];
  // The status is checked again inside the write: a user disabled or locked since the read
  // matches nothing (P2025), the batch rolls back, and the core reads again.
  const active = { id: account.userId, OR: [{ status: "active" }, { status: "locked", lockedUntil: { lte: at } }] };
  ops.push(
    challenge === null
      ? db.user.update({ where: active, data: { lastSigninAt: at }, select: userSelect })
      : db.user.findUniqueOrThrow({ where: active, select: userSelect }),
  );
  // A link waiting for MFA is written when the challenge completes, not now.
  if (account.kind === "link" && challenge === null) {
    ops.push(
      db.identity.create({
        data: { ...account.identity, userId: account.userId, createdAt: at, lastSigninAt: at },
        select: { id: true },
      }),
    );
  } else if (account.kind === "existing" && challenge === null) {
    ops.push(
      db.identity.update({ where: { id: account.identityId }, data: { lastSigninAt: at }, select: { id: true } }),
    );
  }
  return ops;
}

/** The challenge, or the session with its first refresh token and what was seen. */
function sessionOrChallengeWrites(db: Db, write: SigninWrite): Prisma.PrismaPromise<unknown>[] {
  if ("challenge" in write) return [challengeCreate(db, write.challenge)];
  const { account, session, refreshToken, at } = write;
  const identityId = account.kind === "existing" ? account.identityId : account.identity.id;
  return [
    db.session.create({ data: sessionRow(session, identityId), select: { id: true } }),
    db.refreshToken.create({
      data: {
        id: refreshToken.id,
        sessionId: refreshToken.sessionId,
        tokenHash: refreshToken.tokenHash,
        createdAt: refreshToken.createdAt,
        expiresAt: refreshToken.expiresAt,
      },
      select: { id: true },
    }),
    // The device and network this sign-in came from, for the next risk assessment.
    ...(write.seen === undefined ? [] : seenWrites(db, session.userId, write.seen, at)),
  ];
}

/** A lost race as the conflict the core retries on (status, username, replay, identity); else a store error. */
function signinConflictOf(e: unknown): unknown {
  if ((e as { code?: unknown })?.code === "P2025") return new SigninConflict("status", { cause: e });
  const fields = uniqueViolationFields(e);
  if (fields?.includes("username")) return new SigninConflict("username", { cause: e });
  if (fields?.includes("key")) return new SigninConflict("replay", { cause: e });
  if (fields?.includes("subject") || fields?.includes("issuer")) return new SigninConflict("identity", { cause: e });
  return storeError(e);
}

/**
 * The audit rows that count against an address key: only counted failures carry one
 * (core/address-limit.ts countedAddressKey), so this is a seek on (address_key, at).
 */
function addressFailures(key: string, since: Date) {
  return { addressKey: key, at: { gte: since } };
}

export function createAuditLog(
  db: Db,
): AuditLog & SigninFailureCounter & SingleUsePurger & { purgeAuditBefore(before: Date): Promise<number> } {
  return {
    async purgeExpiredUses(before) {
      // The keys start with the expiry: a range of the primary key.
      const { count } = await guarded(() =>
        db.usedIdToken.deleteMany({ where: { key: { lt: expiredUsesBefore(before) } } }),
      );
      return count;
    },
    /** Audit rows older than `before` (the retention), in batches so no lock is held for long. */
    async purgeAuditBefore(before) {
      let total = 0;
      for (;;) {
        const batch = await guarded(() =>
          db.auditEvent.findMany({ where: { at: { lt: before } }, select: { id: true }, take: 5000 }),
        );
        if (batch.length === 0) return total;
        const { count } = await guarded(() =>
          db.auditEvent.deleteMany({ where: { id: { in: batch.map((r) => r.id) } } }),
        );
        total += count;
        if (batch.length < 5000) return total;
      }
    },
    async record(event) {
      await guarded(() => db.auditEvent.create({ data: auditRow(event), select: { id: true } }));
    },
    failuresFromIp(ip, since, cap) {
      // Index (address_key, at); `take` bounds the work however long an attack goes on.
      return guarded(() => db.auditEvent.count({ where: addressFailures(ip, since), take: cap }));
    },
    async nthRecentFailureFromIp(ip, since, n) {
      const row = await guarded(() =>
        db.auditEvent.findFirst({
          where: addressFailures(ip, since),
          orderBy: { at: "desc" },
          skip: n - 1,
          select: { at: true },
        }),
      );
      return row?.at ?? null;
    },
  };
}
