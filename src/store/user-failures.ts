import type { AuditRecord } from "../core/model.ts";

/** Audit types that count as failures attributed to a user, for risk's `recent_failures` signal. */
export const FAILURE_TYPES: readonly string[] = [
  "signin.failed",
  "mfa.verify_failed",
  "mfa.challenge_exhausted",
  "mfa.code_failed",
];

/**
 * Every audit type a per-user count reads: risk's FAILURE_TYPES and the attempt budgets' records
 * (attempt-budget-store.ts budgetFailures: wrong second-factor codes, which are FAILURE_TYPES, and
 * wrong current passwords).
 */
export const USER_COUNTED_TYPES: readonly string[] = [...FAILURE_TYPES, "password.change_failed"];

/**
 * The user a record counts against, or null when no per-user count reads it (a success, an
 * admin action, anything but USER_COUNTED_TYPES). Stored as `counted_user_id` when the row is
 * written, the only column the per-user counts seek on, so the index (counted_user_id, type, at)
 * holds failures only: a successful sign-in, the common row, adds nothing to it, where an index
 * led by the user id took a random page of it per sign-in (one WAL page of the ~6 a returning
 * sign-in writes on SQLite). The counts keep their own type and code filters.
 */
export function countedUserId(event: Pick<AuditRecord, "type" | "userId">): string | null {
  return event.userId != null && USER_COUNTED_TYPES.includes(event.type) ? event.userId : null;
}
