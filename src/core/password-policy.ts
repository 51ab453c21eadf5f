import type { PasswordStatus, UserWithPassword } from "./model.ts";

const DAY_MS = 86_400_000;

/**
 * When local passwords expire. `maxAgeDays: null` means never (NIST SP 800-63B advises against
 * periodic changes; organisations that must rotate configure it).
 */
export interface PasswordExpiryPolicy {
  maxAgeDays: number | null;
  /** Days before expiry during which the warning is `expiring` (0: no warning window). */
  warningDays: number;
  /** Days after expiry during which the warning is `expired_grace` (0: expired at once). */
  graceDays: number;
}

/** Passwords never expire; only an operator's flag forces a change. */
export const NO_PASSWORD_EXPIRY: PasswordExpiryPolicy = Object.freeze({
  maxAgeDays: null,
  warningDays: 0,
  graceDays: 0,
});

/**
 * The password status of a user at `now`, a pure function of its inputs.
 *
 * With `expiresAt = changedAt + maxAgeDays` and `n = ceil((expiresAt - now) / 1 day)`:
 *
 * | n                      | warning         | must change        |
 * |------------------------|-----------------|--------------------|
 * | n > warningDays        | none            | flag               |
 * | 1 <= n <= warningDays  | `expiring`      | flag               |
 * | -graceDays < n <= 0    | `expired_grace` | flag               |
 * | n <= -graceDays        | `expired`       | true               |
 *
 * so `passwordExpiresIn` is positive exactly while the password is valid (1 = expires within the
 * next 24 hours), 0 in the first 24 hours after expiry, and -k when it expired more than k days
 * ago: it keeps counting past expiry rather than disappearing, so clients can say "expired 3 days
 * ago". Users without a local password (`changedAt` null) get only `mustChangePassword` (the
 * operator's flag); so do all users when passwords do not expire.
 */
export function passwordStatus(
  input: { changedAt: Date | null; mustChangePassword: boolean },
  now: Date,
  policy: PasswordExpiryPolicy,
): PasswordStatus {
  if (input.changedAt === null || policy.maxAgeDays === null) {
    return { mustChangePassword: input.mustChangePassword };
  }
  const expiresAt = input.changedAt.getTime() + policy.maxAgeDays * DAY_MS;
  // `+ 0` turns the -0 of ceil(-0.5) into 0.
  const daysLeft = Math.ceil((expiresAt - now.getTime()) / DAY_MS) + 0;
  if (daysLeft > policy.warningDays) {
    return { mustChangePassword: input.mustChangePassword, passwordExpiresIn: daysLeft };
  }
  if (daysLeft >= 1) {
    return { mustChangePassword: input.mustChangePassword, passwordExpiresIn: daysLeft, passwordWarning: "expiring" };
  }
  if (daysLeft > -policy.graceDays) {
    return {
      mustChangePassword: input.mustChangePassword,
      passwordExpiresIn: daysLeft,
      passwordWarning: "expired_grace",
    };
  }
  return { mustChangePassword: true, passwordExpiresIn: daysLeft, passwordWarning: "expired" };
}

/** {@link passwordStatus} of a loaded user. */
export function passwordStatusOf(user: UserWithPassword, now: Date, policy: PasswordExpiryPolicy): PasswordStatus {
  return passwordStatus(
    { changedAt: user.passwordChangedAt, mustChangePassword: user.mustChangePassword },
    now,
    policy,
  );
}
