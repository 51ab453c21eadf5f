import type {
  AuditRecord,
  ClientInfo,
  Principal,
  SessionInfo,
  ExternalIdentity,
  NewRefreshToken,
  NewSession,
  UserRecord,
  UserStatus,
  UserWithPassword,
} from "./model.ts";
import type { NewChallenge, SeenContext, SigninHistory } from "./mfa-ports.ts";

/** Verifies an external ID token; rejections are DomainErrors with `id_token_*` / `provider_*` codes. */
export interface IdTokenVerifier {
  verify(
    idToken: string,
    options: { provider?: string | undefined; nonce?: string | undefined },
  ): Promise<ExternalIdentity>;
}

export interface LinkedAccount {
  user: UserRecord;
  identityId: string;
}

/** Reads accounts. */
export interface AccountReader {
  findByIdentity(issuer: string, subject: string): Promise<LinkedAccount | null>;
  /** Users whose e-mail equals `emailNormalized` and is verified. */
  findByVerifiedEmail(emailNormalized: string): Promise<UserRecord[]>;
}

/** What one sign-in reads, asked for all at once (see SigninReader). */
export interface SigninSnapshotQuery {
  issuer: string;
  subject: string;
  /** A verified, normalized e-mail: its owners are read too, in case the identity is new. */
  verifiedEmail: string | null;
  /** Failed sign-ins from `ip` since `since` (refusals for the limit itself excluded), at most `cap`. */
  ipFailures: { ip: string; since: Date; cap: number } | null;
  /** What risk assessment asks about the linked user's history (null: nothing). */
  history: { deviceKey: string | null; network: string | null; failuresSince: Date } | null;
}

/** Everything a sign-in decides on, read together. */
export interface SigninSnapshot {
  /** The identity's link, its user, and that user's sign-in history (null when not asked for). */
  linked: { identityId: string; user: UserWithPassword; history: SigninHistory | null } | null;
  /** Users whose verified e-mail is `verifiedEmail` (at most two), read when `linked` is null. */
  emailOwners: UserWithPassword[];
  /** Failed sign-ins from the address, up to the cap (0 when not asked for). */
  ipFailures: number;
}

/**
 * The read of the sign-in hot path: the identity, its user with status and password change time,
 * the risk history and the per-address failure count in one read (one statement; one round trip
 * on PostgreSQL). Rejects with DomainError `unavailable` when the database is out of reach.
 */
export interface SigninReader {
  readSignin(query: SigninSnapshotQuery): Promise<SigninSnapshot>;
}

export interface NewUser {
  id: string;
  username: string;
  email: string | null;
  emailNormalized: string | null;
  emailVerified: boolean;
  phone: string | null;
  createdAt: Date;
}

export interface NewIdentity {
  id: string;
  issuer: string;
  subject: string;
  provider: string;
  email: string | null;
  emailVerified: boolean;
}

/** How the sign-in attaches to a user: an existing link, a new link, or a new user. */
export type AccountWrite =
  | { kind: "existing"; userId: string; identityId: string }
  | { kind: "link"; userId: string; identity: NewIdentity }
  | { kind: "create"; user: NewUser; identity: NewIdentity };

/**
 * Writes everything a sign-in changes in one transaction: the account (created, linked or
 * touched), then either the session, its first refresh token and the device and network it was
 * seen from (`seen`), or, when a second factor is required, the MFA challenge instead (no
 * session, no token; an existing user is not touched until the challenge completes); and the
 * audit record.
 *
 * The user's status is re-checked inside the write: an existing user who is no longer active
 * (disabled or locked since it was read) gets nothing written and a {@link SigninConflict}
 * `status`, so the core reads again and refuses with the status's own code.
 *
 * Rejects with DomainError `internal` and a cause for storage faults; with a
 * {@link SigninConflict} when a unique constraint lost a race, so the core can retry.
 */
export interface SigninWriter {
  commitSignin(write: SigninWrite): Promise<UserWithPassword>;
}

export type SigninWrite = {
  account: AccountWrite;
  at: Date;
  audit: AuditRecord;
  /**
   * Marks the ID token (and a server-issued nonce) used, each under a unique key kept until its
   * `expiresAt`: a second use (on any replica) writes nothing and rejects with
   * {@link SigninConflict} `replay`.
   */
  uses?: readonly SingleUse[] | undefined;
} & (
  | { session: NewSession; refreshToken: NewRefreshToken; seen?: SeenContext | undefined }
  | { challenge: NewChallenge }
);

/**
 * Thrown by a store when a concurrent writer won; `target` names what collided (`status`: the
 * user stopped being active between the sign-in's read and its write).
 */
export class SigninConflict extends Error {
  override readonly name = "SigninConflict";
  readonly target: "identity" | "username" | "status" | "replay";
  constructor(target: "identity" | "username" | "status" | "replay", options?: { cause?: unknown }) {
    super(target === "status" ? "the user is no longer active" : target === "replay" ? "the ID token was already used" : `unique constraint on ${target}`, options);
    this.target = target;
  }
}

export interface AuditLog {
  record(event: AuditRecord): Promise<void>;
}

/** Counts refused sign-ins from the audit trail, so every replica sees the same count. */
export interface SigninFailureCounter {
  /** Failed sign-ins from `ip` since `since` (refusals for the limit itself excluded), at most `cap`. */
  failuresFromIp(ip: string, since: Date, cap: number): Promise<number>;
  /**
   * The time of the `n`-th most recent counted failure from `ip` since `since` (null: fewer): the
   * limit lifts when that one leaves the window.
   */
  nthRecentFailureFromIp(ip: string, since: Date, n: number): Promise<Date | null>;
}

/** Something accepted once (an ID token, a nonce): its key, remembered until `expiresAt`. */
export interface SingleUse {
  key: string;
  expiresAt: Date;
}

/** Forgets single-use markers past their expiry. */
export interface SingleUsePurger {
  purgeExpiredUses(before: Date): Promise<number>;
}

/** Seals and opens server-issued nonces (stateless: an HMAC binds the device and the expiry). */
export interface NonceSealer {
  seal(deviceId: string, expiresAt: Date): string;
  /** The expiry of a nonce sealed by us for `deviceId`; null for anything else. */
  open(nonce: string, deviceId: string): Date | null;
}

export interface AccessTokenClaims {
  userId: string;
  sessionId: string;
  amr: readonly string[];
  provider: string | null;
}

export interface AccessTokenIssuer {
  /** Lifetime of issued access tokens, in seconds. */
  readonly ttlSeconds: number;
  issue(claims: AccessTokenClaims, now: Date): Promise<string>;
}

/** Opaque bearer secrets (refresh tokens, challenges): random, stored only as a hash. */
export interface OpaqueTokens {
  issue(prefix: string): { token: string; hash: string };
  hash(token: string): string;
}

export type { ClientInfo };

/** A stored signing key; `privateKeyEnc` is ciphertext, never the key itself. */
export interface SigningKeyRecord {
  /** 1, 2, 3… in creation order (null for keys from before generations existed). */
  generation?: number | null;
  kid: string;
  alg: string;
  publicJwk: string;
  privateKeyEnc: string;
  createdAt: Date;
  retiredAt: Date | null;
  expiresAt: Date | null;
}

export interface SigningKeyStore {
  /** Keys not yet expired at `now`, newest first. */
  listUsable(now: Date): Promise<SigningKeyRecord[]>;
  /**
   * Stores `key` as generation `after + 1`, where `after` is the newest generation the caller
   * saw. False when another writer stored that generation first (a concurrent first start or
   * rotation from the same view); the caller then uses the winner's key.
   */
  insertNext(key: SigningKeyRecord, after: number): Promise<boolean>;
  /** Stops every key but `keepKid` signing at `at`; they stay published until `expiresAt`. */
  retireAllBut(keepKid: string, at: Date, expiresAt: Date): Promise<void>;
}

/** Verifies this service's own access tokens (signature, issuer, audience, expiry). */
export interface AccessTokenVerifier {
  verify(token: string, now: Date): Promise<Principal>;
}

/** What the store found for a presented refresh token, inside the rotation transaction. */
export interface RefreshState {
  tokenId: string;
  tokenExpiresAt: Date;
  /** When it was spent before this call (null: this call spent it). */
  previouslyUsedAt: Date | null;
  session: SessionInfo;
  user: UserWithPassword;
}

export type RefreshDecision =
  | { kind: "rotate"; next: NewRefreshToken; audit: AuditRecord }
  | { kind: "reject"; revokeSession: string | null; audit: AuditRecord | null };

export interface SessionStore {
  /**
   * In one transaction: spends the refresh token with hash `tokenHash` (atomically: of two
   * concurrent callers exactly one spends it), reads its session and user, asks `decide`, then
   * applies the decision (new token + session touch, or revocation) and its audit record.
   * `decide` receives null when no token has that hash.
   */
  refresh(tokenHash: string, now: Date, decide: (state: RefreshState | null) => RefreshDecision): Promise<RefreshDecision>;
  /** A session with its user's status, for authenticating requests (one read). */
  findSession(sessionId: string): Promise<(SessionInfo & { user: Pick<UserRecord, "status" | "lockedUntil"> }) | null>;
  /** The session a refresh token belongs to, with the token's own state. */
  findSessionByRefreshToken(tokenHash: string): Promise<(SessionInfo & { tokenUsedAt: Date | null; tokenExpiresAt: Date }) | null>;
  listActiveSessions(userId: string, now: Date): Promise<SessionInfo[]>;
  /** Revokes the user's session(s) not yet revoked; returns how many. Audited in the same transaction. */
  revokeSessions(
    filter: { userId: string; sessionId?: string | undefined },
    reason: string,
    now: Date,
    audit: AuditRecord,
  ): Promise<number>;
  findUser(userId: string): Promise<UserWithPassword | null>;
  /** Deletes sessions (and their refresh tokens) that ended before `before`; returns how many. */
  purgeExpiredSessions(before: Date): Promise<number>;
}

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
  /** How many audit events of `type` with `code` the user has since `since` (throttling). */
  countRecentEvents(userId: string, type: string, code: string, since: Date): Promise<number>;
  /** The time of the `n`-th most recent such event since `since` (null: fewer). */
  nthRecentEvent(userId: string, type: string, code: string, since: Date, n: number): Promise<Date | null>;
  /**
   * In one transaction: sets the hash only if the stored one is still `expectedHash` (null: only
   * if the user has none), stamps `changed_at`, clears `must_change_password`, revokes the user's
   * other sessions when `revokeOtherSessions` names the session to keep, and records `audit`
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

/** A user as an operator sees it. */
export interface AdminUserRecord extends UserWithPassword {
  statusReason: string | null;
  lastSigninAt: Date | null;
}

export interface IdentityRecord {
  id: string;
  issuer: string;
  subject: string;
  provider: string;
  email: string | null;
  emailVerified: boolean;
  createdAt: Date;
  lastSigninAt: Date;
}

/** An MFA factor, without its secret. */
export interface FactorRecord {
  id: string;
  type: string;
  confirmedAt: Date | null;
  createdAt: Date;
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
   * reason, revokes every session of the user in the same transaction; returns how many.
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
  }): Promise<{ kind: "unlinked"; revokedSessions: number } | { kind: "last_identity" } | { kind: "identity_not_found" }>;
  /** Newest first. */
  listAudit(userId: string, limit: number): Promise<AuditEntry[]>;
}
