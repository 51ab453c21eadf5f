import { timingSafeEqual } from "node:crypto";
import { Secret, TOTP } from "otpauth";
import type { TotpEngine } from "../core/ports/mfa.ts";

export interface TotpOptions {
  /** Shown by authenticator apps above the account name (e.g. the product name). */
  issuer: string;
  /** Accepted time steps either side of now (1: a code is good for about ±30 s more). */
  window: number;
}

const DIGITS = 6;
const PERIOD = 30;
// SHA-1 is what every authenticator app implements; HMAC-SHA-1 is not affected by SHA-1
// collisions (RFC 6238 allows SHA-256/512, but many apps silently ignore the parameter).
const ALGORITHM = "SHA1";
/** 160-bit secrets, as RFC 4226 §4 recommends. */
const SECRET_BYTES = 20;

/**
 * TOTP (RFC 6238) through `otpauth`: 6 digits, 30-second steps, SHA-1. Codes are compared in
 * constant time; `match` returns the time step so callers can refuse replays of the same or an
 * older step (RFC 6238 §5.2: "the verifier MUST NOT accept the second attempt of the OTP").
 */
export function createTotpEngine(options: TotpOptions): TotpEngine {
  return {
    digits: DIGITS,
    period: PERIOD,
    algorithm: ALGORITHM,
    newSecret() {
      return new Secret({ size: SECRET_BYTES }).base32;
    },
    keyUri(secret, account) {
      return new TOTP({
        issuer: options.issuer,
        label: account,
        secret: Secret.fromBase32(secret),
        algorithm: ALGORITHM,
        digits: DIGITS,
        period: PERIOD,
      }).toString();
    },
    match(secret, code, now, after) {
      const clean = code.replace(/[\s-]/g, "");
      if (!new RegExp(`^\\d{${DIGITS}}$`).test(clean)) return null;
      const key = Secret.fromBase32(secret);
      const current = TOTP.counter({ period: PERIOD, timestamp: now.getTime() });
      let found: number | null = null;
      // Check every step in the window (no early exit, so timing says nothing about which).
      for (let delta = -options.window; delta <= options.window; delta++) {
        const step = current + delta;
        const expected = TOTP.generate({
          secret: key,
          algorithm: ALGORITHM,
          digits: DIGITS,
          period: PERIOD,
          timestamp: step * PERIOD * 1000,
        });
        if (timingSafeEqual(Buffer.from(expected), Buffer.from(clean)) && (after === null || step > after))
          found = step;
      }
      return found;
    },
  };
}

/** The code of `secret` at `at` (for tests and tooling; the service never needs to make codes). */
export function totpCode(secret: string, at: Date): string {
  return TOTP.generate({
    secret: Secret.fromBase32(secret),
    algorithm: ALGORITHM,
    digits: DIGITS,
    period: PERIOD,
    timestamp: at.getTime(),
  });
}
