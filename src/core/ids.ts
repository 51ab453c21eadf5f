import { randomBytes } from "node:crypto";

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"; // Crockford base32, lower case

/** Lower-case base32 of `bytes` random bytes. */
export function randomBase32(bytes: number): string {
  const buf = randomBytes(bytes);
  let out = "";
  let acc = 0;
  let bits = 0;
  for (const b of buf) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(acc << (5 - bits)) & 31];
  return out;
}

/**
 * A new prefixed identifier such as `usr_0k3…` (128 random bits). Prefixes tell an id's kind at a
 * glance in logs and support tickets (`usr_…` a user, `ses_…` a session).
 */
export function newId(prefix: "usr" | "idn" | "ses" | "rtk" | "evt" | "chl" | "mfa" | "rcv" | "pk" | "wac" | "tdv"): string {
  return `${prefix}_${randomBase32(16)}`;
}
