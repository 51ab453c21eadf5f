import type {
  AuditRecord,
  ClientInfo,
  Principal,
  SessionInfo,
  ExternalIdentity,
  NewRefreshToken,
  NewSession,
  UserRecord,
} from "./model.ts";

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
 * Writes everything a successful sign-in changes in one transaction: the account (created,
 * linked or touched), the session, its first refresh token and the audit record.
 *
 * Rejects with DomainError `internal` and a cause for storage faults; with a
 * {@link SigninConflict} when a unique constraint lost a race, so the core can retry.
 */
export interface SigninWriter {
  commitSignin(write: {
    account: AccountWrite;
    at: Date;
    session: NewSession;
    refreshToken: NewRefreshToken;
    audit: AuditRecord;
  }): Promise<UserRecord>;
}

/** Thrown by a store when a concurrent writer won; `target` names what collided. */
export class SigninConflict extends Error {
  override readonly name = "SigninConflict";
  readonly target: "identity" | "username";
  constructor(target: "identity" | "username", options?: { cause?: unknown }) {
    super(`unique constraint on ${target}`, options);
    this.target = target;
  }
}

export interface AuditLog {
  record(event: AuditRecord): Promise<void>;
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
  insert(key: SigningKeyRecord): Promise<void>;
  /** Stops `kid` signing at `at`; it stays published until `expiresAt`. */
  retire(kid: string, at: Date, expiresAt: Date): Promise<void>;
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
  user: UserRecord;
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
  findSession(sessionId: string): Promise<SessionInfo | null>;
  findSessionByRefreshToken(tokenHash: string): Promise<SessionInfo | null>;
  listActiveSessions(userId: string, now: Date): Promise<SessionInfo[]>;
  /** Revokes the user's session(s) not yet revoked; returns how many. Audited in the same transaction. */
  revokeSessions(
    filter: { userId: string; sessionId?: string | undefined },
    reason: string,
    now: Date,
    audit: AuditRecord,
  ): Promise<number>;
  findUser(userId: string): Promise<UserRecord | null>;
}
