import type {
  AuditRecord,
  NewIdentity,
  NewRefreshToken,
  NewSession,
  RiskSummary,
  UserRecord,
  UserWithPassword,
} from "../model.ts";
import type { MfaMethod } from "../risk.ts";
import type { SeenContext } from "./risk-history.ts";
import type { NewTrustedDevice } from "./trusted-devices.ts";

/** Ports of second factors: challenges, TOTP, recovery codes and sealed secrets. */

/** A sign-in waiting for its second factor. The token itself is never stored. */
export interface NewChallenge {
  id: string;
  tokenHash: string;
  userId: string;
  identityId: string;
  provider: string;
  /** The device key of the sign-in (a hash, see signin-context.ts); never the client's raw device id. */
  deviceKey: string | null;
  ip: string | null;
  userAgent: string | null;
  /** Authentication methods so far; completion adds the factor's. */
  amr: readonly string[];
  risk: RiskSummary;
  context: SeenContext;
  methods: readonly MfaMethod[];
  /**
   * The identity a sign-in links by e-mail (with `identityId` as its id). Linking is what the
   * second factor protects, so it is written only when the challenge completes.
   */
  pendingIdentity: NewIdentity | null;
  createdAt: Date;
  expiresAt: Date;
  /**
   * The OAuth client whose sign-in asked for the second factor (null or absent: the service's own
   * API): only the same door and client may complete it, and the session it opens is bound to it.
   */
  clientId?: string | null | undefined;
}

export interface ChallengeRecord extends Omit<NewChallenge, "tokenHash" | "ip" | "userAgent"> {
  /** Verification calls so far, this one included. */
  attempts: number;
  consumedAt: Date | null;
  consumedReason: "completed" | "exhausted" | null;
}

export interface TotpFactorRecord {
  id: string;
  userId: string;
  secretEnc: string;
  confirmedAt: Date | null;
  lastUsedStep: number | null;
}

export interface NewRecoveryCode {
  id: string;
  codeHash: string;
}

/** What the store found for a presented challenge token, inside the verification transaction. */
export interface ChallengeState {
  challenge: ChallengeRecord;
  user: UserRecord;
  /** The user's confirmed TOTP factor. */
  totp: TotpFactorRecord | null;
  /** The user's unused recovery codes. */
  recoveryCodes: { id: string; codeHash: string }[];
  /** Wrong second-factor codes of the user since `failuresSince` (see countCodeFailures). */
  recentCodeFailures: number;
}

export type ChallengeDecision =
  | {
      kind: "complete";
      /** What the code spent: a TOTP time step (must be newer than the last) or a recovery code. */
      spend:
        | { kind: "totp"; factorId: string; step: number }
        | { kind: "recovery_code"; codeId: string }
        /** A passkey assertion: its ceremony is spent, its counter moves to `signCount` (forward only). */
        | { kind: "webauthn"; passkeyId: string; ceremonyId: string; signCount: number; backedUp: boolean };
      session: NewSession;
      refreshToken: NewRefreshToken;
      seen: SeenContext;
      /** `trust_device`: the device to trust from now on (its credential goes to the client once). */
      trustDevice: NewTrustedDevice | null;
      audit: AuditRecord;
    }
  | { kind: "reject"; /** The challenge dies (attempts used up). */ kill: boolean; audit: AuditRecord | null };

/** Challenges and second factors, on a database. */
export interface MfaStore {
  /** Deletes challenges that expired before `before`; returns how many. */
  purgeExpiredChallenges(before: Date): Promise<number>;
  /**
   * In one transaction: counts an attempt on the live challenge with hash `tokenHash` (atomic: of
   * concurrent callers each counts once, and at most one can complete it), reads it with its
   * user's factors, asks `decide`, then applies the decision: for `complete`, spends the code
   * (refusing a TOTP step that is not newer than the last, or a recovery code already used, with
   * DomainError `mfa_code_invalid` and nothing written), marks the challenge completed, opens the
   * session with its refresh token, records the device and network as seen, stores the trusted
   * device when asked, touches the user
   * and identity, and writes the audit record; for `reject`, kills the challenge when asked and
   * writes the audit record, keeping the counted attempt. `decide` gets null for an unknown hash.
   * Resolves with the decision and, for `complete`, the user as updated.
   */
  verifyChallenge(
    tokenHash: string,
    now: Date,
    decide: (state: ChallengeState | null) => ChallengeDecision,
    failuresSince?: Date,
  ): Promise<{ decision: ChallengeDecision; user: UserWithPassword | null }>;

  /** The challenge with hash `tokenHash`, as it stands (nothing counted). */
  findChallenge(tokenHash: string): Promise<ChallengeRecord | null>;
  findUser(userId: string): Promise<UserRecord | null>;
  /** The user's TOTP factor, pending or confirmed. */
  findTotp(userId: string): Promise<TotpFactorRecord | null>;
  /** Unused recovery codes of the user. */
  countRecoveryCodes(userId: string): Promise<number>;
  /**
   * Wrong second-factor codes of the user since `since`, wherever they were tried: challenges
   * (`mfa.verify_failed` with `mfa_code_invalid` / `mfa_method_not_available`, and
   * `mfa.challenge_exhausted`) and MfaService calls (`mfa.code_failed`). One budget for all.
   */
  countCodeFailures(userId: string, since: Date): Promise<number>;
  /** The time of the user's `n`-th most recent wrong code since `since` (null: fewer). */
  nthRecentCodeFailure(userId: string, since: Date, n: number): Promise<Date | null>;
  /**
   * Stores a pending TOTP factor, replacing an earlier pending one. Rejects with DomainError
   * `totp_already_enrolled` when the user has a confirmed one.
   */
  savePendingTotp(
    factor: { id: string; userId: string; secretEnc: string; createdAt: Date },
    audit: AuditRecord,
  ): Promise<void>;
  /**
   * Confirms the pending factor at time step `step` and replaces the user's recovery codes, in
   * one transaction; the session `sessionId` counts as having completed a second factor now
   * (`mfa_at`, `amr` gains `otp` and `mfa`). False (nothing written) when the factor is no longer pending.
   */
  confirmTotp(
    factorId: string,
    step: number,
    codes: NewRecoveryCode[],
    now: Date,
    sessionId: string,
    audit: AuditRecord,
  ): Promise<boolean>;
  /**
   * Step-up: in one transaction spends the code (a TOTP step newer than the last, or the unused
   * recovery code with hash `codeHash`, or a passkey answer: its live `step_up` ceremony opened by
   * this session, and the passkey's counter moved forward) and marks the live session `sessionId` of `userId` as
   * having completed a second factor now (`mfa_at`, `amr` gains `methods`), with the audit
   * record. `not_spent` (nothing written): the step was not newer or the code is used or unknown;
   * `session_gone`: the session is revoked or not the user's. Otherwise the session as updated.
   */
  stepUp(
    sessionId: string,
    userId: string,
    spend:
      | { kind: "totp"; factorId: string; step: number }
      | { kind: "recovery_code"; codeHash: string }
      | { kind: "webauthn"; passkeyId: string; ceremonyId: string; signCount: number; backedUp: boolean },
    methods: readonly string[],
    now: Date,
    audit: AuditRecord,
  ): Promise<"not_spent" | "session_gone" | { amr: string[]; provider: string | null; authTime: Date }>;
  /**
   * Spends time step `step` on the confirmed factor and then removes it (and with it the trust
   * of every device of the user), or replaces the recovery codes (`codes`), in one transaction. False (nothing written) when the step is not
   * newer than the last one used (a replay) or the factor is gone.
   */
  withTotpStep(
    factorId: string,
    step: number,
    change: { kind: "disable" } | { kind: "replace_recovery_codes"; codes: NewRecoveryCode[] },
    now: Date,
    audit: AuditRecord,
  ): Promise<boolean>;
}

/** TOTP (RFC 6238). Secrets are base32 text. */
export interface TotpEngine {
  readonly digits: number;
  readonly period: number;
  readonly algorithm: string;
  newSecret(): string;
  /** The `otpauth://totp/...` key URI for an authenticator app. */
  keyUri(secret: string, account: string): string;
  /**
   * The time step whose code `code` is, within the accepted window around `now` and newer than
   * `after` (the last step used); null when there is none (wrong, stale or replayed).
   */
  match(secret: string, code: string, now: Date, after: number | null): number | null;
}

/** Seals secrets at rest (AES-256-GCM under the key-encryption key), bound to `aad`. */
export interface SecretBox {
  seal(plaintext: string, aad: string): string;
  open(sealed: string, aad: string): string;
}

/** Recovery codes: random, shown once, stored as a keyed hash. */
export interface RecoveryCodes {
  generate(count: number): string[];
  /** The stored form of `code` for `userId` (input normalised: case, spaces and dashes ignored). */
  hash(userId: string, code: string): string;
  /** Constant-time comparison of two stored forms. */
  equal(a: string, b: string): boolean;
}
