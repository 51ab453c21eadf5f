import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { writeSecretFile } from "./secret-file.ts";

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
      return ["v1", iv, cipher.getAuthTag(), ciphertext]
        .map((p) => (typeof p === "string" ? p : p.toString("base64url")))
        .join(".");
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

/** Where the key-encryption key comes from (config/to-deps.ts builds it); `describe` names it for operators. */
export type KeyEncryptionKeySource =
  { base64: string; describe: string } | { file: string; createIfMissing: boolean; describe: string };

/**
 * The key-encryption key for secrets at rest: the configured value, else the file's content; a
 * missing file is created (random, mode 0600, in a 0700 directory) only where `createIfMissing`
 * (the embedded default), and `onCreated` is told so the operator hears of it.
 */
export function loadKeyEncryptionKey(source: KeyEncryptionKeySource, onCreated: (file: string) => void): Buffer {
  if ("base64" in source) return Buffer.from(source.base64, "base64");
  const { file } = source;
  if (!existsSync(file)) {
    if (!source.createIfMissing) throw new Error(`tokens.key_encryption_key_file: ${file} does not exist`);
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeSecretFile(file, `${randomBytes(32).toString("base64")}\n`);
    onCreated(file);
  }
  const kek = Buffer.from(readFileSync(file, "utf8").trim(), "base64");
  if (kek.length !== 32) throw new Error(`${file}: must hold base64 of exactly 32 bytes`);
  return kek;
}

/** What to tell an operator whose KEK cannot open the stored signing key `kid`: which key, why, the ways out. */
export function unreadableSigningKeyMessage(kid: string, source: KeyEncryptionKeySource): string {
  return (
    `the signing key ${kid} in the database cannot be opened: the key-encryption key (KEK) from ${source.describe} ` +
    "differs from the one that sealed the signing keys (every replica needs the same KEK).\n" +
    "Two ways out:\n" +
    "  1. start with the KEK that sealed them (the one the other replicas or the previous start used), or\n" +
    "  2. if that KEK is lost: `npm run keys:rotate -- --replace-unreadable` with the new KEK seals a new signing key and\n" +
    "     retires the unreadable ones (tokens they signed stay valid until they expire; TOTP secrets and recovery\n" +
    "     codes made under the old KEK cannot be checked any more, so those users enroll again)."
  );
}
