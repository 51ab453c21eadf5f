import { hash, verify } from "@node-rs/argon2";
import type { PasswordHasher } from "../core/ports/passwords.ts";

export interface Argon2Parameters {
  /** Memory per hash, in KiB (OWASP: 19456 with time cost 2, or more memory with less time). */
  memoryKib: number;
  /** Passes over memory. */
  timeCost: number;
  /** Lanes (threads) per hash. */
  parallelism: number;
}

/** `Algorithm.Argon2id` of @node-rs/argon2, whose ambient const enum has no runtime value here. */
const ARGON2ID = 2;

/**
 * Argon2id (RFC 9106) through @node-rs/argon2, which hashes off the event loop on libuv's thread
 * pool. Hashes are PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) with a fresh 16-byte salt,
 * so a hash keeps verifying after the configured parameters change; the next password change
 * re-hashes with the new ones.
 */
export function createArgon2PasswordHasher(params: Argon2Parameters): PasswordHasher {
  const options = {
    algorithm: ARGON2ID,
    memoryCost: params.memoryKib,
    timeCost: params.timeCost,
    parallelism: params.parallelism,
    outputLen: 32,
  };
  return {
    hash: (password) => hash(password, options),
    async verify(stored, password) {
      // Only our own algorithm: a hash of another kind in the column is a fault, never a match.
      if (!stored.startsWith("$argon2id$")) return false;
      try {
        // The library compares the digests in constant time.
        return await verify(stored, password);
      } catch {
        return false;
      }
    },
  };
}
