import { createHash, timingSafeEqual } from "node:crypto";
import type { ClientSecretCheck } from "../core/oauth.ts";

/**
 * OAuth client secrets, configured as their SHA-256 only (`oauth.clients.<id>.client_secret_sha256`).
 * A plain hash is enough because the secrets are generated, not chosen: 32 random bytes
 * (`openssl rand -base64 32 | tr '+/' '-_' | tr -d '='`) cannot be guessed from their hash, as
 * with admin API keys; a slow hash would only hand a caller a cheap way to burn our CPU.
 */
export function createClientSecretCheck(): ClientSecretCheck {
  return {
    matches(secret, sha256) {
      const presented = createHash("sha256").update(secret, "utf8").digest();
      return presented.length === sha256.length && timingSafeEqual(presented, sha256);
    },
  };
}

/** The 32 bytes of a configured hash, written as 64 hex digits or 43 base64url characters. */
export function clientSecretHashBytes(written: string): Uint8Array {
  return written.length === 64 ? Buffer.from(written, "hex") : Buffer.from(written, "base64url");
}
