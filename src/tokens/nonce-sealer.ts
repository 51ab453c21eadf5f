import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";
import type { NonceSealer } from "../core/ports/single-use.ts";

const RANDOM = 16;
const EXPIRY = 4;
const MAC = 16;
const LENGTH = RANDOM + EXPIRY + MAC;

/**
 * Server-issued nonces without storage: 16 random bytes, the expiry (seconds, 4 bytes) and an
 * HMAC-SHA-256 (truncated to 16 bytes) over both and the device id, under a key derived from the
 * key-encryption key, so every replica opens what any replica sealed. 48 URL-safe characters.
 */
export function createNonceSealer(kek: Buffer): NonceSealer {
  const key = Buffer.from(hkdfSync("sha256", kek, Buffer.alloc(0), "identity signin nonces v1", 32));
  const mac = (head: Buffer, deviceId: string) =>
    createHmac("sha256", key).update(head).update(deviceId).digest().subarray(0, MAC);
  return {
    seal(deviceId, expiresAt) {
      const head = Buffer.alloc(RANDOM + EXPIRY);
      randomBytes(RANDOM).copy(head);
      head.writeUInt32BE(Math.ceil(expiresAt.getTime() / 1000), RANDOM);
      return Buffer.concat([head, mac(head, deviceId)]).toString("base64url");
    },
    open(nonce, deviceId) {
      if (nonce.length !== Math.ceil((LENGTH * 4) / 3) || !/^[A-Za-z0-9_-]+$/.test(nonce)) return null;
      const raw = Buffer.from(nonce, "base64url");
      if (raw.length !== LENGTH) return null;
      const head = raw.subarray(0, RANDOM + EXPIRY);
      if (!timingSafeEqual(raw.subarray(RANDOM + EXPIRY), mac(head, deviceId))) return null;
      return new Date(head.readUInt32BE(RANDOM) * 1000);
    },
  };
}
