import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Clock } from "../../src/core/clock.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { devIdToken, uniqueSub } from "../support/signin-e2e.ts";

/** Failed sign-ins per client address are limited, from the shared audit trail. */
describe("sign-in failure limit per address", () => {
  let t: TestApp;
  let now = new Date();
  const clock: Clock = { now: () => now };
  const json = { "content-type": "application/json" };

  beforeAll(async () => {
    t = await startTestApp({
      config: {
        dev: true,
        "rate_limit.signin_failures_per_ip": 3,
        "rate_limit.signin_failure_window_seconds": 300,
        "server.trusted_proxies": ["127.0.0.1"],
      },
      overrides: { clock },
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  const signin = async (idToken: string, clientIp: string) => {
    const res = await fetch(`${t.url}/auth/id-token/signin`, {
      method: "POST",
      headers: { ...json, "x-forwarded-for": clientIp },
      body: JSON.stringify({ id_token: idToken, provider: "dev" }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const mint = (sub: string) => devIdToken(t.url, sub);

  it("answers an address's failures with 429 rate_limited once it has too many, until the window has passed; a valid token still signs in", async () => {
    const attacker = "203.0.113.9";
    for (let i = 0; i < 3; i++) expect((await signin("not.a.token", attacker)).status).toBe(400);
    const limited = await signin(`${(await mint("forged")).slice(0, -8)}AAAAAAAA`, attacker);
    expect(limited.status).toBe(429);
    expect(limited.body).toMatchObject({
      code: "rate_limited",
      status: "resource_exhausted",
      details: { retry_after_seconds: "300" },
    });
    expect(await t.app.database.client.session.count()).toBe(0);
    // While limited, every bad token gets the same answer: the limit is no verification oracle.
    expect((await signin("not.a.token", attacker)).body["code"]).toBe("rate_limited");

    // Others' failures do not lock out a user behind the same address: a valid
    // token is not refused for them.
    expect((await signin(await mint("victim-of-nat"), attacker)).status).toBe(200);
    // Another address is not affected.
    expect((await signin(await mint("elsewhere"), "198.51.100.4")).status).toBe(200);

    // The limit's own refusals do not extend it: after the window the address is told its errors again.
    now = new Date(now.getTime() + 301_000);
    expect((await signin("not.a.token", attacker)).status).toBe(400);
  });
});

/**
 * 30 junk refresh attempts from one address (a NAT, a carrier-grade NAT, an
 * office) must not stop a legitimate user behind it from refreshing a valid token or signing in
 * with a valid ID token. The regression: the address limit refused every request from the
 * address before looking at its credential.
 */
describe("others' failures behind the same address", () => {
  let t: TestApp;
  const LIMIT = 30;
  const NAT = "192.0.2.77";
  const json = { "content-type": "application/json" };
  beforeAll(async () => {
    t = await startTestApp({
      config: {
        dev: true,
        "rate_limit.signin_failures_per_ip": LIMIT,
        "rate_limit.signin_failure_window_seconds": 300,
        "server.trusted_proxies": ["127.0.0.1"],
      },
    });
  });
  afterAll(async () => {
    await t?.close();
  });
  const post = async (path: string, body: unknown, ip: string) => {
    const res = await fetch(`${t.url}${path}`, {
      method: "POST",
      headers: { ...json, "x-forwarded-for": ip },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it("after 30 junk refresh attempts from the NAT, its legitimate user still refreshes and signs in; the junk is refused", async () => {
    const first = await post(
      "/auth/id-token/signin",
      { id_token: await devIdToken(t.url, uniqueSub("nat")), provider: "dev" },
      NAT,
    );
    expect(first.status).toBe(200);
    for (let i = 0; i < LIMIT; i++) {
      const junk = await post("/auth/token/refresh", { refresh_token: `rt_${"x".repeat(42)}${i % 10}` }, NAT);
      expect(junk).toMatchObject({ status: 401, body: { code: "refresh_token_invalid" } });
    }
    // The address is over its limit: more junk is refused, and learns nothing.
    expect(await post("/auth/token/refresh", { refresh_token: "rt_junk" }, NAT)).toMatchObject({
      status: 429,
      body: { code: "rate_limited" },
    });
    expect(await post("/auth/id-token/signin", { id_token: "not.a.token", provider: "dev" }, NAT)).toMatchObject({
      status: 429,
      body: { code: "rate_limited" },
    });

    // The legitimate user's valid credentials are served.
    const refreshed = await post("/auth/token/refresh", { refresh_token: first.body["refresh_token"] }, NAT);
    expect(refreshed.status).toBe(200);
    expect(refreshed.body["refresh_token"]).toMatch(/^rt_/);
    expect(
      (
        await post(
          "/auth/id-token/signin",
          { id_token: await devIdToken(t.url, uniqueSub("nat2")), provider: "dev" },
          NAT,
        )
      ).status,
    ).toBe(200);
    // A nonce needs no credential: issuing one is not refused for the address's failures.
    expect((await post("/auth/id-token/nonce", { device_id: "nat-device" }, NAT)).status).toBe(200);
    // The spent refresh token is still theft (reuse detection), but answered as the limit.
    expect(await post("/auth/token/refresh", { refresh_token: first.body["refresh_token"] }, NAT)).toMatchObject({
      status: 429,
      body: { code: "rate_limited" },
    });
    expect(await t.app.database.client.session.count({ where: { revokedAt: { not: null } } })).toBe(1);
  });
});

/**
 * The per-address limit keys IPv6 by its prefix (rate_limit.ipv6_prefix,
 * default /64; IPv4 by rate_limit.ipv4_prefix, default /32), so a client that rotates addresses
 * inside its /64 — every IPv6 subscriber gets at least one — gets no fresh budget. The
 * regression: each rotated address had a budget of its own. The service listens on ::1 behind
 * a trusted proxy (::1) that forwards the rotating addresses.
 */
describe("the per-address limit over IPv6", () => {
  let t: TestApp;
  const LIMIT = 5;
  beforeAll(async () => {
    t = await startTestApp({
      config: {
        dev: true,
        "server.host": "::1",
        "rate_limit.signin_failures_per_ip": LIMIT,
        "rate_limit.signin_failure_window_seconds": 300,
        "server.trusted_proxies": ["::1"],
      },
    });
  });
  afterAll(async () => {
    await t?.close();
  });
  const signin = async (idToken: string, clientIp: string) => {
    const res = await fetch(`${t.url}/auth/id-token/signin`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-forwarded-for": clientIp },
      body: JSON.stringify({ id_token: idToken, provider: "dev" }),
    });
    return { status: res.status, code: ((await res.json()) as { code?: string }).code };
  };

  it("counts every address of a /64 as one; another /64 keeps its own budget", async () => {
    expect(new URL(t.url).hostname).toBe("[::1]");
    for (let i = 1; i <= LIMIT; i++)
      expect(await signin("not.a.token", `2001:db8:1:2::${i.toString(16)}`)).toEqual({
        status: 400,
        code: "id_token_malformed",
      });
    // Rotating inside the /64 (any spelling of it) finds the budget spent.
    for (const rotated of [
      "2001:db8:1:2:ffff:ffff:ffff:fffe",
      "2001:0DB8:0001:0002:0:0:0:abcd",
      "[2001:db8:1:2::99]:443",
    ]) {
      expect(await signin("not.a.token", rotated), rotated).toEqual({ status: 429, code: "rate_limited" });
    }
    // The neighbouring /64 is somebody else.
    expect(await signin("not.a.token", "2001:db8:1:3::1")).toEqual({ status: 400, code: "id_token_malformed" });
    // Rows remember the address they came from, and count under the /64.
    const rows = await t.app.database.client.auditEvent.findMany({
      where: { type: "signin.failed", ip: { startsWith: "2001:db8:1:2::" } },
    });
    expect(rows).toHaveLength(LIMIT);
  });

  it("counts an IPv4-mapped IPv6 address as its IPv4 address, however it is written", async () => {
    for (let i = 0; i < LIMIT; i++) expect((await signin("not.a.token", "192.0.2.44")).status).toBe(400);
    expect(await signin("not.a.token", "::ffff:192.0.2.44")).toEqual({ status: 429, code: "rate_limited" });
    expect(await signin("not.a.token", "::ffff:c000:22c")).toEqual({ status: 429, code: "rate_limited" });
    // IPv4 is keyed by the whole address by default: the neighbour is somebody else.
    expect((await signin("not.a.token", "192.0.2.45")).status).toBe(400);
  });
});
