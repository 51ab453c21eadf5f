import { DomainError } from "./errors.ts";
import { USER_STATUSES, type UserRecord, type UserStatus } from "./model.ts";

/**
 * Refuses users who may not hold tokens, each status with its own stable code. A `locked` user
 * whose lock has an end time in the past counts as active again.
 */
export function assertActive(user: Pick<UserRecord, "status" | "lockedUntil">, now: Date): void {
  switch (user.status) {
    case "active":
      return;
    case "disabled":
      throw new DomainError("user_disabled", "this account is disabled");
    case "locked":
      if (user.lockedUntil !== null && user.lockedUntil <= now) return;
      throw new DomainError("user_locked", "this account is locked", {
        ...(user.lockedUntil === null ? {} : { detail: { locked_until: user.lockedUntil.toISOString() } }),
      });
    case "pending":
      throw new DomainError("user_pending", "this account is not yet activated");
  }
}

/** `text` as a user status, or null when it names none (the admin API and the admin tool parse alike). */
export function parseUserStatus(text: string): UserStatus | null {
  return (USER_STATUSES as readonly string[]).includes(text) ? (text as UserStatus) : null;
}

/**
 * An RFC 3339 time with an explicit offset (`2026-12-01T08:00:00Z`), or null: a lock's end must
 * not depend on anyone's time zone, so a time without an offset is refused.
 */
export function parseLockEnd(text: string): Date | null {
  if (
    !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(text) ||
    Number.isNaN(Date.parse(text))
  )
    return null;
  return new Date(text);
}
