import { describe, expect, it } from "vitest";
import { countedAddressKey, createAddressLimit } from "../../src/core/address-limit.ts";
import { DomainError } from "../../src/core/errors.ts";
import type { SigninFailureCounter } from "../../src/core/ports/audit.ts";
import { codeOf } from "../support/error-code.ts";

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
  const limit = createAddressLimit({
    max,
    windowSeconds: WINDOW,
    counter: t.counter,
    clock: { now: () => new Date(now) },
    maxWaitMs: 200,
  });
  return { limit, t, advance: (ms: number) => (now += ms), now: () => now };
}

const bad = new DomainError("id_token_signature_invalid", "no");

/** Admits one attempt from `ip` and ends it: what the caller answers (its own error, the limit's, or "ok"). */
async function answer(
  limit: ReturnType<typeof setup>["limit"],
  ip: string | null,
  rpc: string,
  error?: DomainError,
  options?: { recorded?: boolean },
) {
  const attempt = await limit.admit(ip, rpc);
  if (error === undefined) {
    attempt.settle();
    return "ok";
  }
  return ((await attempt.fail(error, options)) as DomainError).code;
}

describe("the per-address limit", () => {
  it("once the trail holds max failures, answers failures with rate_limited and the time the oldest leaves the window", async () => {
    const s = setup();
    s.t.add("1.1.1.1", T0 - 200_000);
    s.t.add("1.1.1.1", T0 - 100_000);
    s.t.add("1.1.1.1", T0 - 50_000);
    const attempt = await s.limit.admit("1.1.1.1", "SigninWithIdToken");
    expect(await attempt.fail(bad)).toMatchObject({ code: "rate_limited", detail: { retry_after_seconds: "100" } });
    // Other addresses and unknown ones are not affected.
    expect(await answer(s.limit, "2.2.2.2", "SigninWithIdToken", bad)).toBe("id_token_signature_invalid");
    expect(await answer(s.limit, null, "SigninWithIdToken", bad)).toBe("id_token_signature_invalid");
  });

  it("never refuses a success for the address's failures (users behind one NAT); strict admits refuse unheard", async () => {
    const s = setup();
    for (let i = 0; i < 3; i++) s.t.add("1.1.1.1", T0 - 1000);
    expect(await answer(s.limit, "1.1.1.1", "RefreshToken")).toBe("ok");
    expect(await answer(s.limit, "1.1.1.1", "RefreshToken", new DomainError("refresh_token_invalid", "no"))).toBe(
      "rate_limited",
    );
    expect(await answer(s.limit, "1.1.1.1", "SigninWithIdToken")).toBe("ok");
    // A guessable credential (a 6-digit code) is not evaluated at all over the limit.
    expect(await codeOf(s.limit.admit("1.1.1.1", "VerifyMfa", { strict: true }))).toBe("rate_limited");
    // An outage is still reported as one, not hidden behind the limit.
    expect(await answer(s.limit, "1.1.1.1", "SigninWithIdToken", new DomainError("provider_unavailable", "down"))).toBe(
      "provider_unavailable",
    );
  });

  it("admits every attempt at once; of 5 concurrent failures against max 3, 3 are told their error and 2 the limit's", async () => {
    const s = setup();
    const attempts = await Promise.all([1, 2, 3, 4, 5].map(() => s.limit.admit("1.1.1.1", "x")));
    const answers = [];
    for (const a of attempts) answers.push(((await a.fail(bad)) as DomainError).code);
    expect(answers).toEqual([
      "id_token_signature_invalid",
      "id_token_signature_invalid",
      "id_token_signature_invalid",
      "rate_limited",
      "rate_limited",
    ]);
    // A success in the middle of it all is not held up.
    expect(await answer(s.limit, "1.1.1.1", "x")).toBe("ok");
  });

  it("strict: reserves attempts in flight; with max 3, a 4th concurrent one waits and is refused when the 3 fail", async () => {
    const s = setup();
    const attempts = await Promise.all([1, 2, 3].map(() => s.limit.admit("1.1.1.1", "VerifyMfa", { strict: true })));
    const fourth = codeOf(s.limit.admit("1.1.1.1", "VerifyMfa", { strict: true }));
    for (const a of attempts) {
      s.t.add("1.1.1.1", s.now()); // the failure's audit row
      a.settle(bad);
    }
    expect(await fourth).toBe("rate_limited");
  });

  it("strict: lets a waiting attempt in when one in flight succeeds (successes do not count)", async () => {
    const s = setup();
    const attempts = await Promise.all([1, 2, 3].map(() => s.limit.admit("1.1.1.1", "x", { strict: true })));
    const fourth = codeOf(s.limit.admit("1.1.1.1", "x", { strict: true }));
    attempts[0]!.settle();
    expect(await fourth).toBe("ok");
  });

  it("does not count upstream outages or its own refusals as the caller's failures", async () => {
    const s = setup(2);
    for (const code of ["provider_unavailable", "unavailable", "internal", "rate_limited"] as const) {
      (await s.limit.admit("1.1.1.1", "x")).settle(new DomainError(code, "down"));
    }
    expect(await answer(s.limit, "1.1.1.1", "x", bad)).toBe("id_token_signature_invalid");
  });

  it("counts failures with no audit row on this replica, until they leave the window", async () => {
    const s = setup(2);
    const invalid = new DomainError("refresh_token_invalid", "no");
    expect(await answer(s.limit, "1.1.1.1", "RefreshToken", invalid, { recorded: false })).toBe(
      "refresh_token_invalid",
    );
    s.advance(10_000);
    expect(await answer(s.limit, "1.1.1.1", "RefreshToken", invalid, { recorded: false })).toBe(
      "refresh_token_invalid",
    );
    const refused = await (await s.limit.admit("1.1.1.1", "RefreshToken")).fail(invalid, { recorded: false });
    expect(refused).toMatchObject({ code: "rate_limited", detail: { retry_after_seconds: String(WINDOW - 10) } });
    s.advance((WINDOW - 9) * 1000);
    expect(await answer(s.limit, "1.1.1.1", "RefreshToken", invalid, { recorded: false })).toBe(
      "refresh_token_invalid",
    );
  });

  it("reads the trail at most once per sync period per address, and tallies refusals for one audit row", async () => {
    const s = setup(1);
    s.t.add("1.1.1.1", T0);
    for (let i = 0; i < 5; i++) await answer(s.limit, "1.1.1.1", i % 2 === 0 ? "SigninWithIdToken" : "VerifyMfa", bad);
    expect(s.t.reads()).toBe(1);
    const tallies = s.limit.drainRefusals();
    expect(tallies).toEqual([
      { ip: "1.1.1.1", count: 5, first: new Date(T0), last: new Date(T0), rpcs: ["SigninWithIdToken", "VerifyMfa"] },
    ]);
    expect(s.limit.drainRefusals()).toEqual([]);
  });
});

describe("which audit rows count against an address (their stored address key)", () => {
  const client = {
    ip: "2001:db8:1:2::9",
    addressKey: "2001:db8:1:2:0:0:0:0/64",
    userAgent: null,
    requestId: "r",
    deviceId: null,
  };
  const key = (type: string, code?: string) => countedAddressKey({ type, code, client });

  it("a caller's failed sign-in or second factor counts, under the address's key", () => {
    expect(key("signin.failed", "id_token_expired")).toBe("2001:db8:1:2:0:0:0:0/64");
    expect(key("mfa.verify_failed")).toBe("2001:db8:1:2:0:0:0:0/64");
    expect(key("mfa.challenge_exhausted", "mfa_challenge_exhausted")).toBe("2001:db8:1:2:0:0:0:0/64");
    expect(
      countedAddressKey({ type: "signin.failed", code: "id_token_expired", client: { ...client, addressKey: null } }),
    ).toBe("2001:db8:1:2::9");
  });

  it("successes, outages, the limit's own refusals and other events carry none", () => {
    expect(key("signin.succeeded")).toBeNull();
    for (const code of ["provider_unavailable", "unavailable", "internal", "rate_limited"])
      expect(key("signin.failed", code)).toBeNull();
    expect(key("mfa.code_failed", "mfa_code_invalid")).toBeNull();
    expect(key("admin.user_locked")).toBeNull();
  });
});
