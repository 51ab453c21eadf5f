import { describe, expect, it } from "vitest";
import { createNonceSealer } from "../../src/tokens/nonce-sealer.ts";

/**
 * No single-use marker may depend on how its token is spelled. A
 * server nonce's marker hashes the nonce string, which is safe only because a nonce has exactly
 * one spelling that opens: 48 base64url characters carry 36 bytes with no unused bits, and the
 * other alphabet's characters (which Node's decoder would accept) are refused.
 */
describe("nonce sealer", () => {
  const sealer = createNonceSealer(Buffer.alloc(32, 9));
  const expires = new Date("2030-01-01T00:00:00Z");

  it("opens a nonce only under its one spelling", () => {
    for (let n = 0; n < 50; n++) {
      const nonce = sealer.seal("device-a", expires);
      expect(nonce).toMatch(/^[A-Za-z0-9_-]{48}$/);
      expect(sealer.open(nonce, "device-a")).toEqual(expires);
      // Same bytes, other spellings: the standard alphabet, padding, whitespace.
      const standard = nonce.replaceAll("-", "+").replaceAll("_", "/");
      for (const other of [standard, `${nonce}=`, `${nonce}\n`, ` ${nonce}`]) {
        if (other === nonce) continue;
        expect(Buffer.from(other, "base64url").equals(Buffer.from(nonce, "base64url"))).toBe(true);
        expect(sealer.open(other, "device-a")).toBeNull();
      }
      // The last character carries no unused bits: changing any of its bits changes the bytes.
      const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
      const last = alphabet.indexOf(nonce.at(-1)!);
      const flipped = `${nonce.slice(0, -1)}${alphabet[last ^ 1]}`;
      expect(Buffer.from(flipped, "base64url").equals(Buffer.from(nonce, "base64url"))).toBe(false);
      expect(sealer.open(flipped, "device-a")).toBeNull();
    }
  });
});
