import type { SecretBox } from "../core/ports/mfa.ts";
import type { KeyEncryption } from "./key-encryption.ts";

/**
 * Text secrets at rest (TOTP shared secrets) under the same key-encryption key as the signing
 * keys. The AAD is namespaced (`secret:<id>`), so a sealed value cannot be moved onto another
 * row, nor confused with a sealed signing key.
 */
export function createSecretBox(encryption: KeyEncryption): SecretBox {
  return {
    seal: (plaintext, aad) => encryption.seal(Buffer.from(plaintext, "utf8"), `secret:${aad}`),
    open: (sealed, aad) => encryption.open(sealed, `secret:${aad}`).toString("utf8"),
  };
}
