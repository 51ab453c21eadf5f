import { randomBytes, randomFillSync } from "node:crypto";

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"; // Crockford base32, lower case

/** Lower-case base32 of `bytes` fresh random bytes (for secrets too: recovery codes). */
export function randomBase32(bytes: number): string {
  return base32(randomBytes(bytes), 0, bytes);
}

/**
 * Random bytes for ids (identifiers, never secrets), drawn from one buffer that the CSPRNG
 * refills 4 KiB at a time (as node:crypto's randomUUID buffers its own), each byte used once: a
 * sign-in makes three to five ids, and a `randomBytes` call per id (a native call and a Buffer
 * each) measured ~2 % of a returning sign-in's CPU in the profile.
 */
const idBytes = Buffer.alloc(4096);
let idBytesUsed = idBytes.length;

function randomIdBase32(bytes: number): string {
  if (idBytesUsed + bytes > idBytes.length) {
    randomFillSync(idBytes);
    idBytesUsed = 0;
  }
  const start = idBytesUsed;
  idBytesUsed += bytes;
  return base32(idBytes, start, start + bytes);
}

/** Lower-case base32 of `buf[start, end)`. */
function base32(buf: Uint8Array, start: number, end: number): string {
  let out = "";
  let acc = 0;
  let bits = 0;
  for (let i = start; i < end; i++) {
    acc = (acc << 8) | buf[i]!;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(acc << (5 - bits)) & 31];
  return out;
}

/**
 * Kinds written at every sign-in or refresh, and a new user's user and identity: their ids start
 * with the time, so each insert lands at the right edge of the primary-key index (and of indexes
 * that lead with the id, like refresh_tokens.session_id, or a new user's entries in every
 * user_id index: sessions, audit events, identities, devices, networks) instead of on a random
 * page: a commit dirties one hot page there, not a cold one read in first (SQLite writes every
 * dirtied page to the WAL; on PostgreSQL a random page is a full-page image after each
 * checkpoint). A new user's first sign-in wrote 67 KB of WAL with random user ids, 31 KB with
 * these. What the time reveals is already told to whoever holds the id: a session's and token's
 * in the row and the tokens (`iat`, `auth_time`), a user's in `created_at` (LoginResponse.user,
 * GetCurrentUser). The other kinds stay random.
 */
const TIME_ORDERED = new Set(["usr", "idn", "ses", "rtk", "evt"]);

/** Milliseconds since the epoch as 10 base32 characters (50 bits), which sort as the times do. */
function timeBase32(ms: number): string {
  let out = "";
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[ms % 32]! + out;
    ms = Math.floor(ms / 32);
  }
  return out;
}

/**
 * A new prefixed identifier such as `usr_0k3…`: 26 base32 characters, 128 random bits, or for
 * the time-ordered kinds (users, identities, sessions, refresh tokens, audit events) the
 * millisecond time and 80 random bits. Prefixes tell an id's kind at a glance in logs and support
 * tickets (`usr_…` a user, `ses_…` a session).
 */
export function newId(
  prefix: "usr" | "idn" | "ses" | "rtk" | "evt" | "chl" | "mfa" | "rcv" | "pk" | "wac" | "tdv",
): string {
  if (TIME_ORDERED.has(prefix)) return `${prefix}_${timeBase32(Date.now())}${randomIdBase32(10)}`;
  return `${prefix}_${randomIdBase32(16)}`;
}
