/** Domain records shared by the core and its ports. No transport or storage types here. */

/** Every status a user can have; what the admin API and the admin tool accept. */
export const USER_STATUSES = ["active", "disabled", "locked", "pending"] as const;
export type UserStatus = (typeof USER_STATUSES)[number];

export interface UserRecord {
  id: string;
  username: string;
  email: string | null;
  emailVerified: boolean;
  phone: string | null;
  status: UserStatus;
  /** For `locked`: when the lock ends by itself; null means until an operator unlocks. */
  lockedUntil: Date | null;
  mustChangePassword: boolean;
  createdAt: Date;
}

/**
 * A user together with what the password policy needs to know about the local password. Loaded
 * in the same store operation as the user wherever a login result or the current user is built.
 */
export interface UserWithPassword extends UserRecord {
  /** When the local password was last set; null when the user has none (SSO only). */
  passwordChangedAt: Date | null;
}

/**
 * Where the local password stands against the expiry policy: `expiring` inside the warning
 * window before expiry, `expired_grace` after expiry but inside the grace period, `expired` after.
 */
export type PasswordWarning = "expiring" | "expired_grace" | "expired";

/** What clients are told about the user's password, on every login result and the current user. */
export interface PasswordStatus {
  /** Forced by an operator, or the password is `expired`. Always present. */
  mustChangePassword: boolean;
  /**
   * Whole days until the local password expires, rounded up: positive while it is valid, 0 on the
   * first day after expiry, -n when it expired more than n days ago. Absent for users without a
   * local password or when passwords do not expire.
   */
  passwordExpiresIn?: number | undefined;
  /** Absent when there is nothing to warn about (or no local password). */
  passwordWarning?: PasswordWarning | undefined;
}

/** What a verified ID token says about who signed in, plus the provider's policy for it. */
export interface ExternalIdentity {
  provider: ProviderPolicy;
  issuer: string;
  subject: string;
  email: string | null;
  emailVerified: boolean;
  name: string | null;
  preferredUsername: string | null;
  phone: string | null;
  /** Upstream authentication methods (`amr`), when the provider sent them. */
  amr: readonly string[];
  acr: string | null;
  /**
   * What marks this token used (a sign-in accepts each token once): a key under a unique
   * constraint, remembered until the token's expiry (plus skew). Null when the provider allows
   * reuse.
   */
  use: { key: string; expiresAt: Date } | null;
  /** For a provider with `require_nonce: server`: the request's nonce (the token holds it). */
  serverNonce: string | null;
}

/** The part of a provider's configuration that decides accounts (verification is elsewhere). */
/**
 * The placeholder of a multi-tenant issuer (Microsoft Entra's common endpoint,
 * `https://login.microsoftonline.com/{tenantid}/v2.0`): the config schema requires a tenant
 * allowlist beside it, the verifier puts the token's own `tid` in its place (tokens/provider-quirks.ts).
 */
export const TENANT_ID_PLACEHOLDER = "{tenantid}";

export interface ProviderPolicy {
  name: string;
  /** Whether a first sign-in may create a local user. */
  signup: "allow" | "deny";
  /**
   * Whether a first sign-in may attach this identity to an existing user with the same e-mail.
   * `verified`: only when the provider says the e-mail is verified and the local user's e-mail is
   * verified too. `never`: a matching e-mail refuses the sign-in with `account_exists`.
   */
  linkByEmail: "never" | "verified";
  /**
   * Whether this provider's word that it did MFA (`amr`/`acr` in its ID tokens) lowers the risk
   * of a sign-in. Default false: an upstream claim is believed only where configured.
   */
  trustUpstreamMfa?: boolean | undefined;
  /** `acr` values of this provider that mean MFA happened (e.g. an OpenID Connect MFA profile). */
  mfaAcrValues?: readonly string[] | undefined;
}

/** Where a request came from, for sessions and the audit trail. Never holds tokens. */
export interface ClientInfo {
  ip: string | null;
  /**
   * What the per-address limits count this client under (address-list.ts `addressKeyOf`: IPv6
   * by its prefix); absent: `ip` itself. Stored with each audit row that counts against it
   * (`address_key`, address-limit.ts countedAddressKey).
   */
  addressKey?: string | null | undefined;
  userAgent: string | null;
  requestId: string | null;
  deviceId: string | null;
  /**
   * The OAuth client (`oauth.clients.<id>`) the request came through the OAuth door as, once
   * authenticated; absent or null: the service's own API (RPC/REST). A session is bound to it
   * (`sessions.client_id`), and audit rows carry it in their detail as `client_id`.
   */
  oauthClientId?: string | null | undefined;
}

export interface NewSession {
  id: string;
  userId: string;
  provider: string | null;
  amr: readonly string[];
  client: ClientInfo;
  createdAt: Date;
  expiresAt: Date;
  /** Set when the session opens with a completed second factor (a challenge); else null. */
  mfaAt?: Date | null | undefined;
}

export interface NewRefreshToken {
  id: string;
  sessionId: string;
  tokenHash: string;
  createdAt: Date;
  expiresAt: Date;
}

export interface AuditRecord {
  type: string;
  at: Date;
  code?: string | undefined;
  userId?: string | undefined;
  provider?: string | undefined;
  issuer?: string | undefined;
  subject?: string | undefined;
  client: ClientInfo;
  /** Non-secret, non-personal detail (no tokens, no e-mail addresses). */
  detail?: Record<string, unknown> | undefined;
}

/** The result of a sign-in, before it is translated to a transport message. */
export interface LoginResult {
  user: UserRecord;
  /** Computed by the core (`passwordStatusOf` in password-policy.ts); the same on every login path. */
  passwordStatus: PasswordStatus;
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
  sessionId: string;
  /** Sign-in paths only (ID token, MFA completion): the risk assessment of this sign-in. */
  risk?: RiskSummary | undefined;
  /**
   * Sign-in paths only: `mfa_enrollment_required` when MFA was called for, the user has no
   * second factor and policy let them in.
   */
  mfaCheckReason?: string | undefined;
  /** MFA completion with `trust_device` only: the new device credential, shown this once. */
  deviceCredential?: string | undefined;
}

/** The outcome of risk assessment, as a client is told it. */
export interface RiskSummary {
  /** 0 (no risk) to 100. */
  score: number;
  level: "low" | "medium" | "high";
  /** Whether policy called for MFA for this sign-in. */
  requireMfa: boolean;
  /** Methods recommended at this level. */
  recommendedMethods: string[];
  /** Codes of the signals that moved the score, strongest first. */
  signals: string[];
  /** Why MFA was called for (the strongest signal, or `policy`); null when it was not. */
  reason: string | null;
}

/** A sign-in that must be completed with a second factor (VerifyMfa): no tokens yet. */
export interface MfaChallengeResult {
  kind: "mfa_required";
  user: UserRecord;
  /** `chg_...`, the bearer credential of the pending sign-in; only its hash is stored. */
  challengeToken: string;
  expiresAt: Date;
  /** What the user can complete it with. */
  methods: string[];
  /** Why (`new_device`, `policy`, ...). */
  reason: string;
  risk: RiskSummary;
}

/** A session as its owner may see it. */
export interface SessionInfo {
  id: string;
  userId: string;
  provider: string | null;
  amr: string[];
  ip: string | null;
  userAgent: string | null;
  createdAt: Date;
  lastUsedAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
  /** When the user authenticated (OIDC `auth_time`); sessions older than the column: `createdAt`. */
  authTime: Date;
  /** When the session last completed a second factor (null: never). */
  mfaAt: Date | null;
  /**
   * The OAuth client that opened the session through the OAuth door (null: the service's own
   * API). Only that door and client may refresh it or revoke it by token.
   */
  clientId: string | null;
}

/** Who an access token says is calling, once verified. */
export interface Principal {
  userId: string;
  sessionId: string;
  amr: readonly string[];
  /**
   * What the session's row says about its authentication, filled in by SessionService.authenticate
   * (which reads that row anyway): when the user signed in, and when the session last completed a
   * second factor. Absent when only the token was verified: step-up then counts as not done.
   */
  session?: { authTime: Date; mfaAt: Date | null; clientId: string | null } | undefined;
}

/** A user as a sign-in creates it. */
export interface NewUser {
  id: string;
  username: string;
  email: string | null;
  emailNormalized: string | null;
  emailVerified: boolean;
  phone: string | null;
  createdAt: Date;
}

/** An external identity (issuer, subject) as linked to a user. */
export interface NewIdentity {
  id: string;
  issuer: string;
  subject: string;
  provider: string;
  email: string | null;
  emailVerified: boolean;
}

/** A stored link to an external identity. */
export interface IdentityRecord extends NewIdentity {
  createdAt: Date;
  lastSigninAt: Date;
}

/** The user an external identity is linked to, with the link's id. */
export interface LinkedAccount {
  user: UserRecord;
  identityId: string;
}

/** An MFA factor, without its secret. */
export interface FactorRecord {
  id: string;
  type: string;
  confirmedAt: Date | null;
  createdAt: Date;
}
