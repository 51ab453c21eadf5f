import { afterEach, describe, expect, it, vi } from "vitest";
import { newId } from "../../src/core/ids.ts";

describe("identifiers", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("users, identities, sessions, refresh tokens and audit events sort by the time they were made (right-edge index inserts)", () => {
    vi.useFakeTimers();
    for (const kind of ["usr", "idn", "ses", "rtk", "evt"] as const) {
      const made: string[] = [];
      for (const at of [
        Date.UTC(2026, 0, 1),
        Date.UTC(2026, 0, 1) + 1,
        Date.UTC(2026, 11, 2, 10),
        Date.UTC(2099, 5, 1),
      ]) {
        vi.setSystemTime(at);
        made.push(newId(kind), newId(kind));
      }
      for (const id of made) expect(id).toMatch(new RegExp(`^${kind}_[0-9a-hjkmnp-tv-z]{26}$`));
      // Pairs made in the same millisecond share the time prefix and differ in their random part.
      for (let i = 0; i < made.length; i += 2) {
        expect(made[i]!.slice(0, 14)).toBe(made[i + 1]!.slice(0, 14));
        expect(made[i]).not.toBe(made[i + 1]);
      }
      const byTime = made.filter((_, i) => i % 2 === 0);
      expect([...byTime].sort()).toEqual(byTime);
    }
  });

  it("the other kinds are 128 random bits: no time order", () => {
    vi.useFakeTimers();
    vi.setSystemTime(Date.UTC(2026, 0, 1));
    for (const kind of ["chl", "mfa", "rcv", "pk", "wac", "tdv"] as const) {
      const ids = Array.from({ length: 64 }, () => newId(kind));
      for (const id of ids) expect(id).toMatch(new RegExp(`^${kind}_[0-9a-hjkmnp-tv-z]{26}$`));
      expect(new Set(ids.map((id) => id.slice(0, kind.length + 5))).size).toBeGreaterThan(32);
    }
  });

  it("ids drawn across many refills of the random buffer never repeat a random part", () => {
    vi.useFakeTimers();
    vi.setSystemTime(Date.UTC(2026, 0, 1));
    // 5,000 time-ordered ids of one millisecond use 50,000 random bytes: twelve refills of 4 KiB.
    const random = Array.from({ length: 5000 }, (_, i) => newId(i % 2 === 0 ? "ses" : "chl").slice(-16));
    expect(new Set(random).size).toBe(random.length);
    // Every character of the alphabet turns up in every position: the bytes are not stuck.
    for (let pos = 0; pos < 16; pos++) expect(new Set(random.map((r) => r[pos])).size).toBe(32);
  });
});
