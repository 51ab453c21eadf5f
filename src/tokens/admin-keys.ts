import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { AdminKeyVerifier } from "../core/ports/admin.ts";

/** Admin API keys look like this: `adm_` + 256 random bits in base64url (43 characters). */
export const ADMIN_KEY_PATTERN = /^adm_[A-Za-z0-9_-]{43}$/;

/** A configured admin key: its name (the actor in the audit trail) and the key's SHA-256. */
export interface AdminKeyEntry {
  name: string;
  sha256: Uint8Array;
}

/**
 * The SHA-256 of an admin key as written in the configuration: 64 hex digits or 43 base64url
 * characters (either case of hex; base64url without padding, canonical). Null when it is neither.
 */
export function parseAdminKeyHash(text: string): Buffer | null {
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, "hex");
  if (/^[A-Za-z0-9_-]{43}$/.test(text)) {
    const bytes = Buffer.from(text, "base64url");
    // Non-canonical spellings (stray bits in the last character) would decode to the same hash;
    // refuse them so that one hash has one spelling in the configuration.
    return bytes.length === 32 && bytes.toString("base64url") === text ? bytes : null;
  }
  return null;
}

/** SHA-256 of the key as sent (UTF-8, prefix included). */
export function hashAdminKey(key: string): Buffer {
  return createHash("sha256").update(key, "utf8").digest();
}

/**
 * A fresh admin key and the hash to configure. The key is returned once to be shown once; it is
 * stored nowhere (only the hash goes into the configuration).
 */
export function mintAdminKey(): { key: string; sha256Hex: string } {
  const key = `adm_${randomBytes(32).toString("base64url")}`;
  return { key, sha256Hex: hashAdminKey(key).toString("hex") };
}

/**
 * Checks a presented admin key against every configured hash. The presented key is hashed first
 * (so its length and content never steer the comparison), then compared in constant time with
 * *every* configured hash, without stopping at a match: the time taken does not tell which key,
 * or whether any, matched. `equal` is replaceable for tests only.
 */
export function createAdminKeyVerifier(
  keys: readonly AdminKeyEntry[],
  equal: (a: Uint8Array, b: Uint8Array) => boolean = timingSafeEqual,
): AdminKeyVerifier {
  const entries = keys.map((k) => {
    if (k.sha256.length !== 32) throw new Error(`admin key ${k.name}: the SHA-256 must be 32 bytes`);
    return { name: k.name, sha256: Buffer.from(k.sha256) };
  });
  return {
    enabled: entries.length > 0,
    isAdminKey: (text) => ADMIN_KEY_PATTERN.test(text),
    verify(presented) {
      const hash = hashAdminKey(presented);
      let match: string | null = null;
      for (const entry of entries) {
        // Non-short-circuiting: every entry is compared whatever the earlier ones gave.
        if (equal(hash, entry.sha256) && match === null) match = entry.name;
      }
      return match;
    },
  };
}
