import { createHash, randomBytes } from "node:crypto";
import type { OpaqueTokens } from "../core/ports/sessions.ts";

/**
 * Opaque bearer secrets: `<prefix>_` + 256 random bits, base64url. Only their SHA-256 is stored,
 * so a database leak yields nothing usable; lookups are by hash, which is also what makes the
 * comparison constant-time in effect (an attacker cannot steer which bytes of a hash match).
 */
export function createOpaqueTokens(): OpaqueTokens {
  return {
    issue(prefix) {
      const token = `${prefix}_${randomBytes(32).toString("base64url")}`;
      return { token, hash: hashToken(token) };
    },
    hash: hashToken,
  };
}

function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("base64url");
}
