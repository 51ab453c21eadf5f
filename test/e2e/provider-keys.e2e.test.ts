/**
 * The provider's signing keys over time, end to end against a real OpenID provider: discovery,
 * rotation without a restart (an unknown kid refetches, rate-limited), and an outage of the
 * provider after its keys are known.
 */
import { decodeProtectedHeader } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.ts";
import { startTestOidcProvider, type TestOidcProvider } from "../support/oidc-provider.ts";
import { createMovableClock, restSignin, rowCounts, uniqueSub } from "../support/signin-e2e.ts";

describe("provider signing keys", () => {
  let op: TestOidcProvider;
  let testApp: TestApp;
  let url: string;
  const clock = createMovableClock();
  /** Every request the app made to the provider, in order. */
  const upstream: string[] = [];

  beforeAll(async () => {
    op = await startTestOidcProvider();
    testApp = await startTestApp({
      overrides: {
        clock,
        fetch: (input, init) => {
          upstream.push(new URL(input instanceof Request ? input.url : input).pathname);
          return fetch(input, init);
        },
      },
      config: {
        providers: { acme: { issuer: op.issuer, client_ids: [op.clientId], jwks_refetch_cooldown_seconds: 30 } },
      },
    });
    url = testApp.url;
  });

  afterAll(async () => {
    await testApp?.close();
    await op?.close();
  });

  const signin = async (idToken: string) => restSignin(url, { id_token: idToken, provider: "acme" });

  it("finds the keys through discovery once, then serves from the cache", async () => {
    const first = await op.obtainIdToken({ sub: uniqueSub("cache") });
    expect((await signin(first.idToken)).status).toBe(200);
    expect(upstream).toEqual(["/.well-known/openid-configuration", "/jwks"]);
    const second = await op.obtainIdToken({ sub: uniqueSub("cache") });
    expect((await signin(second.idToken)).status).toBe(200);
    expect(upstream).toHaveLength(2);
  });

  it("a rotated key is picked up without a restart, but an unknown kid refetches at most once per cooldown", async () => {
    await op.rotateKeys();
    const rotated = await op.obtainIdToken({ sub: uniqueSub("rotated") });

    // Within the cooldown of the last fetch: refused, and the provider is not asked again.
    const early = await signin(rotated.idToken);
    expect(early.status).toBe(401);
    expect(early.body["code"]).toBe("id_token_key_not_found");
    expect(upstream).toHaveLength(2);

    // After the cooldown the unknown kid triggers one JWKS refetch and the token is accepted.
    clock.advance(31_000);
    const later = await signin(rotated.idToken);
    expect(later.status).toBe(200);
    expect(upstream.slice(2)).toEqual(["/jwks"]);

    // A flood of unknown kids right after does not hammer the provider.
    const floodToken = await op.obtainIdToken({ sub: uniqueSub("flood") });
    const [, p, s] = floodToken.idToken.split(".");
    const header = decodeProtectedHeader(floodToken.idToken);
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => {
        const forged = Buffer.from(JSON.stringify({ ...header, kid: `random-${i}` })).toString("base64url");
        return signin(`${forged}.${p}.${s}`);
      }),
    );
    expect(results.map((r) => r.body["code"])).toEqual(Array(10).fill("id_token_key_not_found"));
    expect(upstream).toHaveLength(3);
  });

  /** Tokens minted while the provider was up. */
  let tokens: { idToken: string }[] = [];

  it("when the provider goes down, keys already known keep working (stale but bounded)", async () => {
    tokens = await Promise.all([1, 2, 3].map(() => op.obtainIdToken({ sub: uniqueSub("outage") })));
    await op.close();

    expect((await signin(tokens[0]!.idToken)).status).toBe(200);
    // Past the freshness window a background refresh fails, yet the cached keys still verify.
    clock.advance(11 * 60 * 1000);
    const before = await rowCounts(testApp.app);
    const res = await signin(tokens[1]!.idToken);
    expect(res.status).toBe(200);
    expect((await rowCounts(testApp.app)).sessions).toBe(before.sessions + 1);
  });

  it("past the maximum staleness with the provider still down: 503 provider_unavailable", async () => {
    clock.advance(25 * 3600 * 1000);
    // The keys are looked up before the token's own times are checked: the answer is about the
    // provider, not about this (by now expired) token.
    const res = await signin(tokens[2]!.idToken);
    expect(res.status).toBe(503);
    expect(res.body["code"]).toBe("provider_unavailable");
  });
});
