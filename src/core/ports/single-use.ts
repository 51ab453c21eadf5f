/** Ports of things accepted once: ID tokens and server-issued nonces. */

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

/** Records single-use markers outside a sign-in's write (client assertions' `jti`). */
export interface SingleUseMarks {
  /** Records `use`; false when its key was recorded before (a replay). */
  markUsed(use: SingleUse): Promise<boolean>;
}
