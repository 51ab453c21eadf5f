import { createHash, createHmac, hkdfSync, randomBytes } from "node:crypto";
import type { OpaqueTokens } from "../core/ports/sessions.ts";

/**
 * Opaque bearer secrets: `<prefix>_` + 256 random bits, base64url. Only their SHA-256 is stored,
 * so a database leak yields nothing usable; lookups are by hash, which is also what makes the
 * comparison constant-time in effect (an attacker cannot steer which bytes of a hash match).
 */
export function createOpaqueTokens(kek?: Buffer): OpaqueTokens {
  // Without a KEK (tools, tests of other parts) successors are random: no grace window can work.
  const key =
    kek === undefined
      ? randomBytes(32)
      : Buffer.from(hkdfSync("sha256", kek, Buffer.alloc(0), "identity refresh successors v1", 32));
  return {
    issue(prefix) {
      const token = `${prefix}_${randomBytes(32).toString("base64url")}`;
      return { token, hash: hashToken(token) };
    },
    successor(spentHash, clientKey) {
      // Derived, not random: every replica recomputes the same successor of the same spent token
      // for the same client (the refresh grace window), and nothing sealed needs storing. 256 bits
      // of HMAC under a key derived from the KEK: unguessable without the KEK, as a random token is.
      const mac = createHmac("sha256", key).update(spentHash).update("\0").update(clientKey).digest("base64url");
      const token = `rt_${mac}`;
      return { token, hash: hashToken(token) };
    },
    hash: hashToken,
  };
}

function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("base64url");
}
