import type { AuditRecord, FactorRecord, IdentityRecord, UserStatus, UserWithPassword } from "../model.ts";

/** Ports of the operators' tools: the admin store and the admin keys. */

/** A user as an operator sees it. */
export interface AdminUserRecord extends UserWithPassword {
  statusReason: string | null;
  lastSigninAt: Date | null;
}

export interface UserDetailRecord {
  user: AdminUserRecord;
  identities: IdentityRecord[];
  /** Sessions not revoked and not past their absolute expiry. */
  activeSessions: number;
  factors: FactorRecord[];
  unusedRecoveryCodes: number;
}

/** A stored audit event. */
export interface AuditEntry {
  id: string;
  at: Date;
  type: string;
  code: string | null;
  provider: string | null;
  issuer: string | null;
  subject: string | null;
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
  detail: Record<string, unknown> | null;
}

/** What operators read and change. Every change is audited in its own transaction. */
export interface AdminStore {
  /** Newest first. */
  listUsers(filter: { status?: UserStatus | undefined; limit: number }): Promise<AdminUserRecord[]>;
  findUserById(id: string): Promise<AdminUserRecord | null>;
  findUserByUsername(username: string): Promise<AdminUserRecord | null>;
  /** By normalized e-mail, verified or not (operators look people up by address). */
  findUsersByEmail(emailNormalized: string): Promise<AdminUserRecord[]>;
  userDetail(userId: string, now: Date): Promise<UserDetailRecord | null>;
  /**
   * Sets the status (and lock end, and the operator's reason) and, when `revokeSessions` gives a
   * reason, revokes every session of the user in the same transaction; returns how many. Any
   * status but `active` also forgets every trusted device of the user, in the same transaction.
   */
  setStatus(change: {
    userId: string;
    status: UserStatus;
    lockedUntil: Date | null;
    reason: string | null;
    at: Date;
    revokeSessions: string | null;
    audit: AuditRecord;
  }): Promise<{ revokedSessions: number }>;
  setMustChangePassword(userId: string, value: boolean, at: Date, audit: AuditRecord): Promise<void>;
  /**
   * Deletes one identity of the user and revokes the user's sessions signed in through
   * `revokeSessionsOfProvider`, in one transaction. Unless `allowLast`, refuses (and changes
   * nothing) when no other identity would remain, checked inside the transaction.
   */
  unlinkIdentity(unlink: {
    userId: string;
    identityId: string;
    allowLast: boolean;
    revokeSessionsOfProvider: string | null;
    at: Date;
    audit: AuditRecord;
  }): Promise<
    { kind: "unlinked"; revokedSessions: number } | { kind: "last_identity" } | { kind: "identity_not_found" }
  >;
  /** Newest first. */
  listAudit(userId: string, limit: number): Promise<AuditEntry[]>;
}

/** Checks presented admin keys against the configured ones (tokens/admin-keys.ts implements it). */
export interface AdminKeyVerifier {
  /** Whether any key is configured at all (none: the admin API is off). */
  readonly enabled: boolean;
  /** Whether `text` has the shape of an admin key (`adm_…`), configured or not. */
  isAdminKey(text: string): boolean;
  /** The name of the configured key `presented` is, or null. */
  verify(presented: string): string | null;
}
