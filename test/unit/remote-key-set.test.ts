import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type CryptoKey, errors as joseErrors, exportJWK, generateKeyPair, type JWK, jwtVerify, SignJWT } from "jose";
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { DomainError } from "../../src/core/errors.ts";
import { createRemoteKeySet, type KeyResolver, type RemoteKeySetOptions } from "../../src/tokens/remote-key-set.ts";

const START = new Date("2030-03-01T12:00:00Z");

/** A clock that only moves when told to. */
function steppingClock() {
  let ms = START.getTime();
  return {
    now: () => new Date(ms),
    advance(seconds: number) {
      ms += seconds * 1000;
    },
  };
}

interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function signingKey(kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: "ES256", use: "sig" } };
}

let key1: SigningKey;
let key2: SigningKey;
beforeAll(async () => {
  [key1, key2] = await Promise.all([signingKey("k1"), signingKey("k2")]);
});

type Mode = "ok" | "error" | "hang";

/**
 * A tiny OpenID provider on 127.0.0.1: discovery and JWKS, with switchable keys and failures.
 * `requested` counts what the key set asked for, at the moment it called fetch (so a background
 * request is counted before it completes); `served` counts what reached the server.
 */
class FakeProvider {
  readonly requested = { discovery: 0, jwks: 0 };
  readonly served = { discovery: 0, jwks: 0 };
  keys: JWK[] = [];
  mode: Mode = "ok";
  /** The issuer the discovery document reports; defaults to the real one. */
  reportedIssuer: string | undefined;
  delayMs = 0;
  private server: Server | undefined;
  private port = 0;

  readonly fetch: typeof fetch = (input, init) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const path = new URL(url).pathname;
    if (path === "/.well-known/openid-configuration") this.requested.discovery++;
    else if (path === "/jwks") this.requested.jwks++;
    return fetch(input, init);
  };

  get issuer(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get jwksUri(): string {
    return `${this.issuer}/jwks`;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined || !server.listening) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body: unknown;
    if (req.url === "/.well-known/openid-configuration") {
      this.served.discovery++;
      body = { issuer: this.reportedIssuer ?? this.issuer, jwks_uri: this.jwksUri };
    } else if (req.url === "/jwks") {
      this.served.jwks++;
      body = { keys: this.keys };
    } else {
      res.writeHead(404).end();
      return;
    }
    if (this.mode === "hang") return; // never answers; stop() drops the socket
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    // A failing provider still sends a well-formed body, so only the status says it failed.
    const status = this.mode === "error" ? 500 : 200;
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  }
}

let provider: FakeProvider;
let clock: ReturnType<typeof steppingClock>;

beforeEach(async () => {
  provider = new FakeProvider();
  provider.keys = [key1.publicJwk];
  await provider.start();
  clock = steppingClock();
});

afterEach(async () => {
  await provider.stop();
});

function keySet(overrides: Partial<RemoteKeySetOptions> = {}): KeyResolver {
  return createRemoteKeySet({
    issuer: provider.issuer,
    clock,
    fetch: provider.fetch,
    freshSeconds: 600,
    maxStaleSeconds: 3600,
    refetchCooldownSeconds: 30,
    timeoutMs: 2000,
    ...overrides,
  });
}

async function token(key: SigningKey, kid = key.kid): Promise<string> {
  const iat = Math.floor(START.getTime() / 1000);
  return new SignJWT({ sub: "user-1" })
    .setProtectedHeader({ alg: "ES256", kid })
    .setIssuer(provider.issuer)
    .setIssuedAt(iat)
    .setExpirationTime(iat + 10 * 365 * 24 * 3600)
    .sign(key.privateKey);
}

async function verify(keys: KeyResolver, jwt: string) {
  const { payload } = await jwtVerify(jwt, keys, { currentDate: clock.now(), algorithms: ["ES256"] });
  return payload;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  throw new Error("expected the promise to reject, but it resolved");
}

async function expectUnavailable(promise: Promise<unknown>): Promise<void> {
  const e = await rejection(promise);
  expect(e).toBeInstanceOf(DomainError);
  expect((e as DomainError).code).toBe("provider_unavailable");
}

async function expectNoMatchingKey(promise: Promise<unknown>): Promise<void> {
  const e = await rejection(promise);
  expect(e).toBeInstanceOf(joseErrors.JWKSNoMatchingKey);
  expect((e as joseErrors.JOSEError).code).toBe("ERR_JWKS_NO_MATCHING_KEY");
}

describe("createRemoteKeySet", () => {
  it("finds the JWKS through discovery, then serves from cache while fresh", async () => {
    const keys = keySet();
    const jwt = await token(key1);
    await expect(verify(keys, jwt)).resolves.toMatchObject({ sub: "user-1" });
    await verify(keys, jwt);
    clock.advance(599);
    await verify(keys, jwt);
    expect(provider.requested).toEqual({ discovery: 1, jwks: 1 });
    expect(provider.served).toEqual({ discovery: 1, jwks: 1 });
  });

  it("refuses a discovery document naming another issuer with provider_unavailable", async () => {
    provider.reportedIssuer = "https://evil.example.test";
    const keys = keySet();
    await expectUnavailable(verify(keys, await token(key1)));
    expect(provider.requested).toEqual({ discovery: 1, jwks: 0 });
  });

  it("refuses a discovery document whose issuer differs only by a trailing slash", async () => {
    provider.reportedIssuer = `${provider.issuer}/`;
    await expectUnavailable(verify(keySet(), await token(key1)));
    expect(provider.requested.jwks).toBe(0);
  });

  it("skips discovery when jwks_uri is configured", async () => {
    const keys = keySet({ jwksUri: provider.jwksUri });
    await expect(verify(keys, await token(key1))).resolves.toMatchObject({ sub: "user-1" });
    expect(provider.requested).toEqual({ discovery: 0, jwks: 1 });
  });

  it("refetches once for an unknown kid, at most once per cooldown", async () => {
    const keys = keySet({ jwksUri: provider.jwksUri, refetchCooldownSeconds: 30 });
    await verify(keys, await token(key1));
    expect(provider.requested.jwks).toBe(1);

    clock.advance(30);
    await expectNoMatchingKey(verify(keys, await token(key1, "unknown-a")));
    expect(provider.requested.jwks).toBe(2);

    clock.advance(10);
    await expectNoMatchingKey(verify(keys, await token(key1, "unknown-b")));
    expect(provider.requested.jwks).toBe(2);

    clock.advance(20);
    await expectNoMatchingKey(verify(keys, await token(key1, "unknown-c")));
    expect(provider.requested.jwks).toBe(3);
  });

  it("does not refetch for an unknown kid right after the keys were fetched", async () => {
    const keys = keySet({ jwksUri: provider.jwksUri });
    await expectNoMatchingKey(verify(keys, await token(key1, "unknown")));
    expect(provider.requested.jwks).toBe(1);
  });

  it("picks up rotated keys without a restart", async () => {
    const keys = keySet();
    await verify(keys, await token(key1));

    provider.keys = [key2.publicJwk];
    clock.advance(31);
    await expect(verify(keys, await token(key2))).resolves.toMatchObject({ sub: "user-1" });
    expect(provider.requested).toEqual({ discovery: 1, jwks: 2 });
    // The retired key is gone from the cache, and within the cooldown nobody asks again.
    await expectNoMatchingKey(verify(keys, await token(key1)));
    expect(provider.requested.jwks).toBe(2);
  });

  it("keeps verifying with stale keys while the provider answers 500, and refreshes in the background", async () => {
    const onBackgroundError = vi.fn();
    const keys = keySet({ onBackgroundError });
    const jwt = await token(key1);
    await verify(keys, jwt);
    expect(provider.requested.jwks).toBe(1);

    provider.mode = "error";
    clock.advance(601); // stale, not yet beyond maxStale
    await expect(verify(keys, jwt)).resolves.toMatchObject({ sub: "user-1" });
    await vi.waitFor(() => expect(onBackgroundError).toHaveBeenCalledTimes(1));
    expect(provider.requested.jwks).toBe(2);

    clock.advance(3600 - 601 + 1); // now beyond maxStale
    await expectUnavailable(verify(keys, jwt));
  });

  it("keeps verifying with stale keys while the provider is down, then gives up beyond maxStale", async () => {
    const onBackgroundError = vi.fn();
    const keys = keySet({ jwksUri: provider.jwksUri, onBackgroundError });
    const jwt = await token(key1);
    await verify(keys, jwt);

    await provider.stop();
    clock.advance(1800);
    await expect(verify(keys, jwt)).resolves.toMatchObject({ sub: "user-1" });
    await vi.waitFor(() => expect(onBackgroundError).toHaveBeenCalledTimes(1));

    clock.advance(1801);
    await expectUnavailable(verify(keys, jwt));
  });

  it("replaces stale keys by the background refresh when the provider answers", async () => {
    const keys = keySet({ jwksUri: provider.jwksUri });
    await verify(keys, await token(key1));

    provider.keys = [key2.publicJwk];
    clock.advance(601);
    // Still served from the stale cache while the refresh runs…
    await verify(keys, await token(key1));
    expect(provider.requested.jwks).toBe(2);
    await vi.waitFor(() => expect(provider.served.jwks).toBe(2));
    // …after which the new key is known without another request.
    await expect(verify(keys, await token(key2))).resolves.toMatchObject({ sub: "user-1" });
    expect(provider.requested.jwks).toBe(2);
  });

  it("fails with provider_unavailable when the first fetch gets a 500", async () => {
    provider.mode = "error";
    await expectUnavailable(verify(keySet({ jwksUri: provider.jwksUri }), await token(key1)));
  });

  it("fails with provider_unavailable when the JWKS has no keys array", async () => {
    provider.keys = undefined as unknown as JWK[];
    await expectUnavailable(verify(keySet({ jwksUri: provider.jwksUri }), await token(key1)));
  });

  it(
    "gives up on a provider that never answers after timeoutMs, with provider_unavailable",
    { timeout: 5000 },
    async () => {
      provider.mode = "hang";
      const keys = keySet({ timeoutMs: 200 });
      await expectUnavailable(verify(keys, await token(key1)));
      expect(provider.requested.discovery).toBe(1);
    },
  );

  it("shares one fetch between concurrent first requests", async () => {
    provider.delayMs = 50;
    const keys = keySet();
    const jwt = await token(key1);
    const results = await Promise.all(Array.from({ length: 8 }, () => verify(keys, jwt)));
    expect(results).toHaveLength(8);
    expect(provider.requested).toEqual({ discovery: 1, jwks: 1 });
    expect(provider.served).toEqual({ discovery: 1, jwks: 1 });
  });
});
