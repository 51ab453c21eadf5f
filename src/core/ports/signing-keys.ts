import type { Principal } from "../model.ts";

/** Ports of our own access tokens and the signing keys behind them. */

export interface AccessTokenClaims {
  userId: string;
  sessionId: string;
  /** RFC 8176 methods of the session (`fed` + upstream, then `otp`/`recovery_code` and `mfa`). */
  amr: readonly string[];
  provider: string | null;
  /** When the user authenticated (the session's `auth_time`), as the token's `auth_time` in seconds. */
  authTime: Date;
}

export interface AccessTokenIssuer {
  /** Lifetime of issued access tokens, in seconds. */
  readonly ttlSeconds: number;
  issue(claims: AccessTokenClaims, now: Date): Promise<string>;
}

/** Verifies this service's own access tokens (signature, issuer, audience, expiry). */
export interface AccessTokenVerifier {
  verify(token: string, now: Date): Promise<Principal>;
}

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
