import type { GeoPoint } from "./risk.ts";

/**
 * How stale a last-seen time (a user's or identity's last sign-in, a device's or network's last
 * sighting) may get before a sign-in writes it again. Within it a sign-in writes none of those
 * rows (on PostgreSQL a user row is only locked, as the race guard against a disable), so a user
 * signing in again and again costs a session, a refresh token, a replay marker and an audit row,
 * nothing more. The risk signals read these times: impossible travel can see the previous
 * sighting up to this much older than it was (a speed underestimated by at most that), new-device
 * and new-network are unaffected (they ask whether a row exists). A changed GeoIP place is
 * written at once.
 *
 * The one rule, used twice: the core decides from the sign-in's read what a write may leave out
 * (`isFresh`; SQLite then runs no statement for it, PostgreSQL's one write statement has no part
 * for it), and the stores' SQL writes only stale rows (`staleBefore`), which also covers a row
 * that changed between the read and the write.
 */
export const LAST_SEEN_RESOLUTION_MS = 60_000;

/** The time before which a last-seen time is stale, for a write at `at`. */
export const staleBefore = (at: Date): Date => new Date(at.getTime() - LAST_SEEN_RESOLUTION_MS);

/** Whether a last-seen time read as `seenAt` needs no writing at `at` (undefined: not read, so it does). */
export function isFresh(seenAt: Date | null | undefined, at: Date): boolean {
  return seenAt != null && seenAt >= staleBefore(at);
}

/** Whether a network's recorded place is where GeoIP places it now (nulls equal only nulls). */
export function samePlace(recorded: GeoPoint, now: GeoPoint | null): boolean {
  return (
    recorded.country === (now?.country ?? null) &&
    recorded.latitude === (now?.latitude ?? null) &&
    recorded.longitude === (now?.longitude ?? null)
  );
}
