import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

/**
 * Envelope for private keys at rest: AES-256-GCM under the key-encryption key (KEK) from
 * configuration. Format: `v1.<iv>.<tag>.<ciphertext>`, base64url parts. The kid is bound as
 * additional authenticated data, so a ciphertext cannot be swapped onto another key's row.
 */
export interface KeyEncryption {
  seal(plaintext: Buffer, aad: string): string;
  open(sealed: string, aad: string): Buffer;
}

export function createKeyEncryption(kek: Buffer): KeyEncryption {
  if (kek.length !== 32) throw new Error("the key-encryption key must be 32 bytes");
  return {
    seal(plaintext, aad) {
      const iv = randomBytes(12);
      const cipher = createCipheriv("aes-256-gcm", kek, iv);
      cipher.setAAD(Buffer.from(aad));
      const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return ["v1", iv, cipher.getAuthTag(), ciphertext].map((p) => (typeof p === "string" ? p : p.toString("base64url"))).join(".");
    },
    open(sealed, aad) {
      const [version, iv, tag, ciphertext] = sealed.split(".");
      if (version !== "v1" || iv === undefined || tag === undefined || ciphertext === undefined) {
        throw new Error("unknown key envelope format");
      }
      const decipher = createDecipheriv("aes-256-gcm", kek, Buffer.from(iv, "base64url"));
      decipher.setAAD(Buffer.from(aad));
      decipher.setAuthTag(Buffer.from(tag, "base64url"));
      return Buffer.concat([decipher.update(Buffer.from(ciphertext, "base64url")), decipher.final()]);
    },
  };
}
