import { describe, expect, it } from "vitest";
import { createAddressLimit } from "../../src/core/address-limit.ts";
import { DomainError } from "../../src/core/errors.ts";
import type { SigninFailureCounter } from "../../src/core/ports/audit.ts";

const T0 = new Date("2026-06-01T12:00:00Z").getTime();
const WINDOW = 300;

/** The audit trail as the counter sees it: failure times per address. */
function trail() {
  const rows = new Map<string, number[]>();
  let reads = 0;
  const counter: SigninFailureCounter = {
    async failuresFromIp(ip, since, cap) {
      reads++;
      return Math.min(cap, (rows.get(ip) ?? []).filter((t) => t >= since.getTime()).length);
    },
    async nthRecentFailureFromIp(ip, since, n) {
      const ts = (rows.get(ip) ?? []).filter((t) => t >= since.getTime()).sort((a, b) => b - a);
      return ts.length >= n ? new Date(ts[n - 1]!) : null;
    },
  };
  return {
    counter,
    reads: () => reads,
    add(ip: string, at: number) {
      rows.set(ip, [...(rows.get(ip) ?? []), at]);
    },
  };
}

function setup(max = 3) {
  let now = T0;
  const t = trail();
  const limit = createAddressLimit({ max, windowSeconds: WINDOW, counter: t.counter, clock: { now: () => new Date(now) }, maxWaitMs: 200 });
  return { limit, t, advance: (ms: number) => (now += ms), now: () => now };
}

const bad = new DomainError("id_token_signature_invalid", "no");
const codeOf = (p: Promise<unknown>) => p.then(() => "admitted", (e: DomainError) => e.code);

describe("the per-address limit", () => {
  it("refuses once the audit trail holds max failures, saying when the oldest of them leaves the window", async () => {
    const s = setup();
    s.t.add("1.1.1.1", T0 - 200_000);
    s.t.add("1.1.1.1", T0 - 100_000);
    s.t.add("1.1.1.1", T0 - 50_000);
    const refused = await s.limit.admit("1.1.1.1", "SigninWithIdToken").catch((e: DomainError) => e);
    expect(refused).toMatchObject({ code: "rate_limited", detail: { retry_after_seconds: "100" } });
    // Other addresses and unknown ones are not affected.
    expect(await codeOf(s.limit.admit("2.2.2.2", "SigninWithIdToken"))).toBe("admitted");
    expect(await codeOf(s.limit.admit(null, "SigninWithIdToken"))).toBe("admitted");
  });

  it("reserves attempts in flight: with max 3, a 4th concurrent attempt waits and is refused when the 3 fail", async () => {
    const s = setup();
    const attempts = await Promise.all([1, 2, 3].map(() => s.limit.admit("1.1.1.1", "x")));
    const fourth = codeOf(s.limit.admit("1.1.1.1", "x"));
    for (const a of attempts) {
      s.t.add("1.1.1.1", s.now()); // the refusal's audit row
      a.settle(bad);
    }
    expect(await fourth).toBe("rate_limited");
  });

  it("lets a waiting attempt in when one in flight succeeds (successes do not count)", async () => {
    const s = setup();
    const attempts = await Promise.all([1, 2, 3].map(() => s.limit.admit("1.1.1.1", "x")));
    const fourth = codeOf(s.limit.admit("1.1.1.1", "x"));
    attempts[0]!.settle();
    expect(await fourth).toBe("admitted");
  });

  it("does not count upstream outages or its own refusals as the caller's failures", async () => {
    const s = setup(2);
    for (const code of ["provider_unavailable", "unavailable", "internal", "rate_limited"] as const) {
      (await s.limit.admit("1.1.1.1", "x")).settle(new DomainError(code, "down"));
    }
    expect(await codeOf(s.limit.admit("1.1.1.1", "x"))).toBe("admitted");
  });

  it("counts failures with no audit row on this replica, until they leave the window", async () => {
    const s = setup(2);
    (await s.limit.admit("1.1.1.1", "RefreshToken")).settle(new DomainError("refresh_token_invalid", "no"), { recorded: false });
    s.advance(10_000);
    (await s.limit.admit("1.1.1.1", "RefreshToken")).settle(new DomainError("refresh_token_invalid", "no"), { recorded: false });
    const refused = await s.limit.admit("1.1.1.1", "RefreshToken").catch((e: DomainError) => e);
    expect(refused).toMatchObject({ code: "rate_limited", detail: { retry_after_seconds: String(WINDOW - 10) } });
    s.advance((WINDOW - 9) * 1000);
    expect(await codeOf(s.limit.admit("1.1.1.1", "RefreshToken"))).toBe("admitted");
  });

  it("reads the trail at most once per sync period per address, and tallies refusals for one audit row", async () => {
    const s = setup(1);
    s.t.add("1.1.1.1", T0);
    for (let i = 0; i < 5; i++) await codeOf(s.limit.admit("1.1.1.1", i % 2 === 0 ? "SigninWithIdToken" : "VerifyMfa"));
    expect(s.t.reads()).toBe(1);
    const tallies = s.limit.drainRefusals();
    expect(tallies).toEqual([{ ip: "1.1.1.1", count: 5, first: new Date(T0), last: new Date(T0), rpcs: ["SigninWithIdToken", "VerifyMfa"] }]);
    expect(s.limit.drainRefusals()).toEqual([]);
  });
});
