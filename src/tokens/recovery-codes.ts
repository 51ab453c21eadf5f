import { createHmac, hkdfSync, timingSafeEqual } from "node:crypto";
import type { RecoveryCodes } from "../core/ports/mfa.ts";
import { randomBase32 } from "../core/ids.ts";

/**
 * Recovery codes: 12 characters of Crockford base32 (60 random bits), shown as `xxxxx-xxxxx-xx`.
 * Stored as HMAC-SHA-256 under a key derived from the key-encryption key, over the user id and
 * the normalised code (case, spaces, dashes and Crockford look-alikes ignored): a copy of the
 * database alone cannot be brute-forced offline, and a hash is useless for any other user.
 */
export function createRecoveryCodes(kek: Buffer): RecoveryCodes {
  const key = Buffer.from(hkdfSync("sha256", kek, Buffer.alloc(0), "identity recovery codes v1", 32));
  return {
    generate(count) {
      return Array.from({ length: count }, () => {
        // 8 bytes give 13 base32 characters; keep 12 (60 bits).
        const raw = randomBase32(8).slice(0, 12);
        return `${raw.slice(0, 5)}-${raw.slice(5, 10)}-${raw.slice(10)}`;
      });
    },
    hash(userId, code) {
      // Crockford base32 reads o as 0 and i, l as 1: what people mistype when copying by hand.
      const normal = code.toLowerCase().replace(/[\s-]/g, "").replace(/o/g, "0").replace(/[il]/g, "1");
      return createHmac("sha256", key).update(`${userId}\n${normal}`).digest("base64url");
    },
    equal(a, b) {
      const x = Buffer.from(a);
      const y = Buffer.from(b);
      return x.length === y.length && timingSafeEqual(x, y);
    },
  };
}
