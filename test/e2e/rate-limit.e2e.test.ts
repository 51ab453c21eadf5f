import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Clock } from "../../src/core/clock.ts";
import { startTestApp, type TestApp } from "../support/app.ts";

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
  const mint = async (sub: string) =>
    ((await (await fetch(`${t.url}/dev/oidc/token`, { method: "POST", headers: json, body: JSON.stringify({ sub }) })).json()) as { id_token: string }).id_token;

  it("refuses an address after too many failures, with 429 rate_limited, until the window has passed", async () => {
    const attacker = "203.0.113.9";
    for (let i = 0; i < 3; i++) expect((await signin("not.a.token", attacker)).status).toBe(400);
    const good = await mint("victim-of-nat");
    const limited = await signin(good, attacker);
    expect(limited.status).toBe(429);
    expect(limited.body).toMatchObject({ code: "rate_limited", status: "resource_exhausted", details: { retry_after_seconds: "300" } });
    expect(await t.app.database.client.session.count()).toBe(0);
    // While limited, any token gets the same answer: the limit is no verification oracle.
    expect((await signin("not.a.token", attacker)).body["code"]).toBe("rate_limited");

    // Another address is not affected.
    expect((await signin(good, "198.51.100.4")).status).toBe(200);

    // The limit's own refusals do not extend it: after the window the address may try again.
    now = new Date(now.getTime() + 301_000);
    expect((await signin(await mint("victim-of-nat"), attacker)).status).toBe(200);
  });
});
