import type { AuditRecord } from "../model.ts";

/**
 * Ports of trusted devices: the holders of a device credential (`tdc_...`) that VerifyMfa with
 * `trust_device` issued once. The credential is the trust; only its hash is stored, bound to the
 * user. Presenting it is looked up inside the sign-in's one read (SigninHistory.trustedDevice).
 */

/** A device trusted by a completed MFA, as stored. */
export interface NewTrustedDevice {
  id: string;
  userId: string;
  /** SHA-256 of the credential (OpaqueTokens.hash); the credential itself is never stored. */
  credentialHash: string;
  /** Browser and OS family at trust time (`firefox/linux`), for people to recognise it. */
  label: string | null;
  createdAt: Date;
  expiresAt: Date;
}

/**
 * Ending trust on request. The other endings happen inside the transactions that cause them:
 * sign-out everywhere (SessionStore.revokeSessions of all sessions), a password change, an
 * operator's disable or lock, and the removal of a second factor.
 */
export interface TrustedDeviceStore {
  /**
   * Forgets the user's trusted device with credential hash `credentialHash`, or every one of the
   * user's (`null`), and writes the audit record in the same transaction; returns how many.
   */
  forget(userId: string, credentialHash: string | null, audit: AuditRecord): Promise<number>;
  /** Deletes trusted devices that expired before `before`; returns how many. */
  purgeExpired(before: Date): Promise<number>;
}
