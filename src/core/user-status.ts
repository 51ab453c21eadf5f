import { DomainError } from "./errors.ts";
import type { UserRecord } from "./model.ts";

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
