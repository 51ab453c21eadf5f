import type {
  AuditRecord,
  ExternalIdentity,
  LinkedAccount,
  NewIdentity,
  NewRefreshToken,
  NewSession,
  NewUser,
  UserRecord,
  UserWithPassword,
} from "../model.ts";
import type { NewChallenge } from "./mfa.ts";
import type { SeenContext, SigninHistory, SigninHistoryQuery } from "./risk-history.ts";
import type { SingleUse } from "./single-use.ts";

/** Ports of the sign-in: verifying the ID token, reading the account and its context at once, writing the outcome at once. */

/** Verifies an external ID token; rejections are DomainErrors with `id_token_*` / `provider_*` codes. */
export interface IdTokenVerifier {
  verify(
    idToken: string,
    options: { provider?: string | undefined; nonce?: string | undefined },
  ): Promise<ExternalIdentity>;
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
  /** The caller's failures from `ip` since `since` (address-limit.ts says which count), at most `cap`. */
  ipFailures: { ip: string; since: Date; cap: number } | null;
  /** What risk assessment asks about the linked user's history (null: nothing). */
  history: SigninHistoryQuery | null;
}

/** Everything a sign-in decides on, read together. */
export interface SigninSnapshot {
  /** The identity's link, its user, and that user's sign-in history (null when not asked for). */
  linked: {
    identityId: string;
    /** The identity's last sign-in, where the store reads it (absent: not read). */
    identityLastSigninAt?: Date | null | undefined;
    user: UserWithPassword;
    history: SigninHistory | null;
  } | null;
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

/** How the sign-in attaches to a user: an existing link, a new link, or a new user. */
export type AccountWrite =
  | {
      kind: "existing";
      userId: string;
      identityId: string;
      /** The identity's last sign-in was read fresh (core/last-seen.ts): the write may leave it. */
      identityFresh?: boolean | undefined;
    }
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
  { session: NewSession; refreshToken: NewRefreshToken; seen?: SeenContext | undefined } | { challenge: NewChallenge }
);

/**
 * Thrown by a store when a concurrent writer won; `target` names what collided (`status`: the
 * user stopped being active between the sign-in's read and its write).
 */
export class SigninConflict extends Error {
  override readonly name = "SigninConflict";
  readonly target: "identity" | "username" | "status" | "replay";
  constructor(target: "identity" | "username" | "status" | "replay", options?: { cause?: unknown }) {
    super(
      target === "status"
        ? "the user is no longer active"
        : target === "replay"
          ? "the ID token was already used"
          : `unique constraint on ${target}`,
      options,
    );
    this.target = target;
  }
}
