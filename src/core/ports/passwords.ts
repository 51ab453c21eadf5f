import type { AuditRecord, UserWithPassword } from "../model.ts";

/** Ports of local passwords: hashing and the change transaction. */

/** One-way hashing of local passwords; the implementation owns the algorithm and its parameters. */
export interface PasswordHasher {
  /** A self-describing hash (PHC string: algorithm, parameters, random salt) of `password`. */
  hash(password: string): Promise<string>;
  /** Whether `password` matches `hash`, compared in constant time; false for a malformed hash. */
  verify(hash: string, password: string): Promise<boolean>;
}

/** Everything a password change decides on, read together. */
export interface PasswordChangeState {
  user: UserWithPassword;
  /** The stored hash; null when the user has no local password yet. */
  hash: string | null;
  /** When the caller's session signed in; null when that session no longer exists. */
  sessionCreatedAt: Date | null;
}

export type PasswordChangeOutcome =
  | { kind: "changed"; user: UserWithPassword; revokedSessions: number }
  /** The stored hash was no longer `expectedHash`: another change won. */
  | { kind: "conflict" };

export interface PasswordStore {
  loadForChange(userId: string, sessionId: string): Promise<PasswordChangeState | null>;
  /**
   * In one transaction: sets the hash only if the stored one is still `expectedHash` (null: only
   * if the user has none), stamps `changed_at`, clears `must_change_password`, revokes the user's
   * other sessions when `revokeOtherSessions` names the session to keep, forgets every trusted
   * device of the user, and records `audit`
   * (its detail gains `revoked_sessions`).
   */
  commitPasswordChange(write: {
    userId: string;
    hash: string;
    expectedHash: string | null;
    at: Date;
    revokeOtherSessions: { keepSessionId: string; reason: string } | null;
    audit: AuditRecord;
  }): Promise<PasswordChangeOutcome>;
}
