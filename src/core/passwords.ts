import { budgetExhausted } from "./address-limit.ts";
import type { Clock } from "./clock.ts";
import { DomainError, isDomainError } from "./errors.ts";
import type { ClientInfo, PasswordStatus, Principal, UserRecord } from "./model.ts";
import { type PasswordExpiryPolicy, passwordStatusOf } from "./password-policy.ts";
import {
  normalizePassword,
  type PasswordStrengthPolicy,
  passwordWeakness,
  weaknessMessage,
} from "./password-strength.ts";
import type { AttemptBudgetStore } from "./ports/attempt-budget.ts";
import type { AuditLog } from "./ports/audit.ts";
import type { PasswordHasher, PasswordStore } from "./ports/passwords.ts";
import { assertActive } from "./user-status.ts";

export interface PasswordServiceDeps {
  clock: Clock;
  store: PasswordStore;
  hasher: PasswordHasher;
  audit: AuditLog;
  expiry: PasswordExpiryPolicy;
  strength: PasswordStrengthPolicy;
  /** End the user's other sessions when the password changes (this one stays). */
  revokeOtherSessions: boolean;
  /** Setting a first password needs a session signed in at most this long ago, in seconds. */
  firstPasswordMaxSigninAgeSeconds: number;
  /** Wrong current passwords accepted per user within `failureWindowSeconds` before `rate_limited`. */
  maxFailures: number;
  failureWindowSeconds: number;
  /** Where a guess at the current password is reserved before it is hashed (the budget above, atomically). */
  budget: AttemptBudgetStore;
  onAuditFailure?: (error: unknown) => void;
}

export interface ChangePasswordInput {
  principal: Principal;
  /** Absent (or empty) when the user has no local password yet. */
  currentPassword: string | undefined;
  newPassword: string;
  client: ClientInfo;
}

export interface ChangePasswordResult {
  user: UserRecord;
  passwordStatus: PasswordStatus;
  revokedSessions: number;
}

export interface PasswordService {
  changePassword(input: ChangePasswordInput): Promise<ChangePasswordResult>;
}

/** Longer "current passwords" are wrong without hashing them (no policy ever allowed them). */
const MAX_CURRENT_PASSWORD_CHARS = 4096;
const FAILED = "password.change_failed";

/**
 * Local passwords of signed-in users. A change proves the current password (Argon2id verify,
 * constant time), or, for a user without one (SSO only), a recent sign-in; the new password must
 * pass the strength rules and differ from the current one. The change clears
 * `must_change_password`, restarts the expiry clock and, by default, ends the user's other
 * sessions. Every attempt is audited; never the passwords.
 */
export function createPasswordService(deps: PasswordServiceDeps): PasswordService {
  const { clock, store, hasher } = deps;

  async function changePassword(input: ChangePasswordInput): Promise<ChangePasswordResult> {
    const now = clock.now();
    const { userId, sessionId } = input.principal;
    /** Set once a wrong current password is recorded (its reservation became the failure record). */
    const attempt = { recorded: false };
    try {
      const state = await store.loadForChange(userId, sessionId);
      if (state === null || state.sessionCreatedAt === null) {
        throw new DomainError("session_revoked", "this session no longer exists");
      }
      assertActive(state.user, now);
      const current =
        input.currentPassword === undefined || input.currentPassword === ""
          ? null
          : normalizePassword(input.currentPassword);
      if (state.hash !== null) await proveCurrentPassword(input, state.hash, current, now, attempt);
      else proveRecentSignin(current, state.sessionCreatedAt, now);
      const next = normalizePassword(input.newPassword);
      checkNewPassword(next, current, state.user);
      return await commit(input, state.hash, next, now);
    } catch (e) {
      if (!attempt.recorded) await auditFailure(input, e, now);
      throw e;
    }
  }

  /**
   * The current password, checked against the user's budget of wrong ones. Throttled before
   * hashing: a stolen access token must not become a password oracle. The guess is reserved in
   * the database before the (slow) hash is checked, so concurrent guesses, on any replica, count
   * against the budget before any of them is evaluated.
   */
  async function proveCurrentPassword(
    input: ChangePasswordInput,
    hash: string,
    current: string | null,
    now: Date,
    attempt: { recorded: boolean },
  ): Promise<void> {
    const { userId, sessionId } = input.principal;
    if (current === null) {
      throw new DomainError("current_password_required", "send current_password to change your password");
    }
    const since = new Date(now.getTime() - deps.failureWindowSeconds * 1000);
    const reservation = await deps.budget.reserve("current_password", {
      userId,
      since,
      max: deps.maxFailures,
      now,
      client: input.client,
      detail: { session_id: sessionId },
    });
    if (reservation.kind === "exhausted") {
      throw budgetExhausted(reservation.nth, deps.failureWindowSeconds, now, "too many wrong passwords");
    }
    let ok: boolean;
    try {
      ok = current.length <= MAX_CURRENT_PASSWORD_CHARS && (await hasher.verify(hash, current));
    } catch (e) {
      await deps.budget.release(reservation.id).catch((e: unknown) => deps.onAuditFailure?.(e));
      throw e;
    }
    if (!ok) {
      attempt.recorded = true;
      await deps.budget.fail(reservation.id, "password_incorrect").catch((e: unknown) => deps.onAuditFailure?.(e));
      throw new DomainError("password_incorrect", "the current password is not correct");
    }
    // The right password is no failure: the rest of the change is judged on its own.
    await deps.budget.release(reservation.id).catch((e: unknown) => deps.onAuditFailure?.(e));
  }

  /**
   * A first password: without a password to prove, a fresh sign-in stands in for it: an access
   * token stolen later in a session cannot plant a password on an SSO-only account.
   */
  function proveRecentSignin(current: string | null, sessionCreatedAt: Date, now: Date): void {
    if (current !== null) {
      throw new DomainError(
        "invalid_request",
        "this account has no password yet; leave current_password out to set one",
      );
    }
    if (now.getTime() - sessionCreatedAt.getTime() > deps.firstPasswordMaxSigninAgeSeconds * 1000) {
      throw new DomainError("reauthentication_required", "sign in again, then set your password within a few minutes", {
        detail: { max_signin_age_seconds: String(deps.firstPasswordMaxSigninAgeSeconds) },
      });
    }
  }

  /** The new password passes the strength rules and differs from the current one. */
  function checkNewPassword(next: string, current: string | null, user: UserRecord): void {
    const weakness = passwordWeakness(next, user, deps.strength);
    if (weakness !== null) {
      throw new DomainError("password_too_weak", weaknessMessage(weakness, deps.strength), {
        detail: {
          reason: weakness,
          min_length: String(deps.strength.minLength),
          max_length: String(deps.strength.maxLength),
        },
      });
    }
    if (current !== null && current === next) {
      throw new DomainError("password_reused", "the new password must differ from the current one");
    }
  }

  /** The change, in one write that expects the hash it read (a change meanwhile is a conflict). */
  async function commit(
    input: ChangePasswordInput,
    expectedHash: string | null,
    next: string,
    now: Date,
  ): Promise<ChangePasswordResult> {
    const { userId, sessionId } = input.principal;
    const hash = await hasher.hash(next);
    const outcome = await store.commitPasswordChange({
      userId,
      hash,
      expectedHash,
      at: now,
      revokeOtherSessions: deps.revokeOtherSessions ? { keepSessionId: sessionId, reason: "password_changed" } : null,
      audit: {
        type: "password.changed",
        at: now,
        userId,
        client: input.client,
        detail: { first_password: expectedHash === null, session_id: sessionId },
      },
    });
    if (outcome.kind === "conflict") {
      throw new DomainError("password_incorrect", "the password was changed by another request meanwhile; try again");
    }
    return {
      user: outcome.user,
      passwordStatus: passwordStatusOf(outcome.user, now, deps.expiry),
      revokedSessions: outcome.revokedSessions,
    };
  }

  /** A refused change, audited (a wrong current password is already recorded by its reservation). */
  async function auditFailure(input: ChangePasswordInput, e: unknown, now: Date): Promise<void> {
    const { userId, sessionId } = input.principal;
    const code = isDomainError(e) ? e.code : "internal";
    try {
      await deps.audit.record({
        type: FAILED,
        at: now,
        code,
        userId,
        client: input.client,
        detail: { session_id: sessionId },
      });
    } catch (auditError) {
      deps.onAuditFailure?.(auditError);
    }
  }

  return { changePassword };
}
