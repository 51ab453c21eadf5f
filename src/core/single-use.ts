import type { SingleUse } from "./ports/single-use.ts";

/**
 * A single-use marker (used ID token, spent nonce) for the `used_id_tokens` table: its key starts
 * with the expiry as 11-digit epoch seconds, so keys sort by time (inserts append; the purge
 * deletes a key range, see {@link expiredUsesBefore}).
 */
export function singleUse(expiresAt: Date, id: string): SingleUse {
  return { key: `${epochKey(expiresAt)}.${id}`, expiresAt };
}

/** Keys of markers that expired before `before` are all below this one. */
export function expiredUsesBefore(before: Date): string {
  return `${epochKey(before)}.`;
}

function epochKey(at: Date): string {
  return String(Math.ceil(at.getTime() / 1000)).padStart(11, "0");
}
