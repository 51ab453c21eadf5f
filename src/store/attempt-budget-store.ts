import type { AttemptBudgetStore, BudgetName } from "../core/ports/attempt-budget.ts";
import { auditRow } from "./prisma-rows.ts";
import type { Db } from "./database.ts";
import { guarded, storeError } from "./prisma-errors.ts";

/** The code of a failure record written ahead of its check (AttemptBudgetStore.reserve). */
export const RESERVED = "attempt_reserved";

/** The record type a budget's reservations are written as. */
const RESERVATION_TYPE: Record<BudgetName, string> = {
  second_factor_code: "mfa.code_failed",
  current_password: "password.change_failed",
};

/**
 * The audit records that count against a budget: for second-factor codes, wrong codes wherever
 * they were tried (challenges: `mfa.verify_failed` with `mfa_code_invalid` /
 * `mfa_method_not_available`, `mfa.challenge_exhausted`; MfaService calls and reservations:
 * `mfa.code_failed`); for passwords, wrong current passwords and reservations. Every type is one
 * of user-failures.ts USER_COUNTED_TYPES, whose rows carry the user as `counted_user_id`.
 */
export function budgetFailures(budget: BudgetName, userId: string, since: Date) {
  if (budget === "second_factor_code") {
    return {
      countedUserId: userId,
      at: { gte: since },
      OR: [
        { type: "mfa.code_failed" },
        { type: "mfa.challenge_exhausted" },
        { type: "mfa.verify_failed", code: { in: ["mfa_code_invalid", "mfa_method_not_available"] } },
      ],
    };
  }
  return {
    countedUserId: userId,
    type: "password.change_failed",
    code: { in: ["password_incorrect", RESERVED] },
    at: { gte: since },
  };
}

/**
 * Takes the per-user lock: a no-op update of the user's row. PostgreSQL holds the row lock to the
 * end of the transaction (so replicas queue here and each counts after the last one committed);
 * on SQLite the write makes the transaction the database's one writer.
 */
export async function lockUser(tx: Pick<Db, "$executeRaw">, userId: string): Promise<void> {
  await tx.$executeRaw`UPDATE users SET status = status WHERE id = ${userId}`;
}

/**
 * Per-user budgets of wrong guesses, on Prisma (reservations are audit records).
 *
 * A burst of guesses at one user (200 at once) must not hold the connection pool: within this
 * process the reservations of one user and budget run one after another (an in-memory queue, no
 * connection held while waiting), and a budget already spent is refused by a plain count without
 * taking the lock. Across replicas the row lock decides.
 */
export function createAttemptBudgetStore(db: Db): AttemptBudgetStore {
  const queues = new Map<string, Promise<unknown>>();
  function oneAtATime<T>(key: string, run: () => Promise<T>): Promise<T> {
    const result = (queues.get(key) ?? Promise.resolve()).then(run);
    const tail = result.catch(() => undefined);
    queues.set(key, tail);
    void tail.then(() => {
      if (queues.get(key) === tail) queues.delete(key);
    });
    return result;
  }

  return {
    reserve(budget, { userId, since, max, now, client, detail }) {
      const where = budgetFailures(budget, userId, since);
      const exhausted = async () => {
        const nth = await db.auditEvent.findFirst({
          where,
          orderBy: { at: "desc" },
          skip: max - 1,
          select: { at: true },
        });
        return { kind: "exhausted" as const, nth: nth?.at ?? null };
      };
      return oneAtATime(`${budget}:${userId}`, async () => {
        try {
          if ((await db.auditEvent.count({ where })) >= max) return await exhausted();
          const id = await db.$transaction(async (tx) => {
            await lockUser(tx, userId);
            if ((await tx.auditEvent.count({ where })) >= max) return null;
            const row = auditRow({ type: RESERVATION_TYPE[budget], at: now, code: RESERVED, userId, client, detail });
            await tx.auditEvent.create({ data: row, select: { id: true } });
            return row.id;
          });
          return id === null ? await exhausted() : { kind: "reserved" as const, id };
        } catch (e) {
          throw storeError(e);
        }
      });
    },

    async fail(id, code) {
      await guarded(() => db.auditEvent.updateMany({ where: { id, code: RESERVED }, data: { code } }));
    },

    async release(id) {
      await guarded(() => db.auditEvent.deleteMany({ where: { id, code: RESERVED } }));
    },
  };
}
