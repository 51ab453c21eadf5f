/**
 * The server around the RPCs, end to end: health and discovery endpoints, CORS for browser
 * clients, graceful shutdown, and the development OpenID issuer.
 */
import * as http from "node:http";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthService } from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { startTestOidcProvider, type TestOidcProvider } from "../support/oidc-provider.ts";
import { expectLogin, expectSnakeCaseLogin, LOCAL_ISSUER, restSignin, uniqueSub } from "../support/signin-e2e.ts";

const ALLOWED_ORIGIN = "https://app.example";

/** A request with full control over headers (fetch may not send `Origin` as given). */
function rawRequest(
  url: string,
  options: { method: string; path: string; headers?: Record<string, string> },
): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const req = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: options.method,
        path: options.path,
        headers: options.headers,
        agent: false,
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("server endpoints and CORS", () => {
  let testApp: TestApp;
  let url: string;

  beforeAll(async () => {
    testApp = await startTestApp({ config: { "server.cors.allowed_origins": [ALLOWED_ORIGIN] } });
    url = testApp.url;
  });

  afterAll(async () => {
    await testApp?.close();
  });

  it("/healthz and /readyz answer 200", async () => {
    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok" });
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: "ready" });
  });

  it("discovery names our issuer and a JWKS of ES256 public keys", async () => {
    const res = await fetch(`${url}/.well-known/openid-configuration`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { issuer: string; jwks_uri: string };
    expect(doc.issuer).toBe(LOCAL_ISSUER);
    expect(doc.jwks_uri).toBe(`${url}/.well-known/jwks.json`);
    const jwks = (await (await fetch(doc.jwks_uri)).json()) as { keys: Record<string, unknown>[] };
    expect(jwks.keys.length).toBeGreaterThan(0);
    for (const key of jwks.keys) {
      expect(key).toMatchObject({ kty: "EC", crv: "P-256", alg: "ES256", use: "sig", kid: expect.any(String) });
      expect(key).not.toHaveProperty("d");
    }
  });

  it("a preflight from an allowed origin gets 204 with the CORS headers Connect and gRPC-Web need", async () => {
    const res = await rawRequest(url, {
      method: "OPTIONS",
      path: "/identity.v1.AuthService/SigninWithIdToken",
      headers: {
        origin: ALLOWED_ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,connect-protocol-version,x-grpc-web",
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers["access-control-allow-origin"]).toBe(ALLOWED_ORIGIN);
    expect(res.headers["vary"]).toMatch(/origin/i);
    const allowed = String(res.headers["access-control-allow-headers"]).split(/,\s*/);
    expect(allowed).toEqual(expect.arrayContaining(["content-type", "connect-protocol-version", "x-grpc-web"]));
    expect(res.headers["access-control-allow-methods"]).toMatch(/POST/);
    expect(res.headers["access-control-max-age"]).toBe("600");
  });

  it("a preflight from any other origin gets 403 and no allow-origin header", async () => {
    const res = await rawRequest(url, {
      method: "OPTIONS",
      path: "/auth/id-token/signin",
      headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
    });
    expect(res.status).toBe(403);
    expect(res.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("an actual request from an allowed origin exposes the gRPC status headers", async () => {
    const res = await rawRequest(url, { method: "GET", path: "/healthz", headers: { origin: ALLOWED_ORIGIN } });
    expect(res.status).toBe(200);
    expect(res.headers["access-control-allow-origin"]).toBe(ALLOWED_ORIGIN);
    expect(String(res.headers["access-control-expose-headers"])).toMatch(/grpc-status-details-bin/);
  });
});

describe("graceful shutdown", () => {
  let op: TestOidcProvider;

  beforeAll(async () => {
    op = await startTestOidcProvider();
  });

  afterAll(async () => {
    await op?.close();
  });

  /**
   * An app whose first sign-in stalls in the provider-key fetch until released, so a request
   * is reliably in flight when shutdown starts.
   */
  async function appWithStalledKeyFetch() {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let signalStalled!: () => void;
    const stalled = new Promise<void>((resolve) => (signalStalled = resolve));
    const testApp = await startTestApp({
      overrides: {
        fetch: async (input, init) => {
          signalStalled();
          await released;
          return fetch(input, init);
        },
      },
      config: { providers: { acme: { issuer: op.issuer, client_ids: [op.clientId] } } },
    });
    return { testApp, stalled, release };
  }

  it("finishes an in-flight HTTP/1.1 request, then stops accepting", async () => {
    const { testApp, stalled, release } = await appWithStalledKeyFetch();
    let closing: Promise<void> | undefined;
    try {
      const { idToken } = await op.obtainIdToken({ sub: uniqueSub("drain-h1") });
      const inFlight = restSignin(testApp.url, { id_token: idToken, provider: "acme" });
      // If the request fails before reaching the stall, fail now rather than at the timeout.
      await Promise.race([stalled, inFlight]);

      closing = testApp.close();
      // Draining: new connections are refused.
      await expect(fetch(`${testApp.url}/healthz`)).rejects.toThrow();
      release();
      const res = await inFlight;
      expect(res.status).toBe(200);
      expect(expectSnakeCaseLogin(res.body).userId).toMatch(/^usr_/);
    } finally {
      release();
      await (closing ?? testApp.close());
    }
  });

  it("finishes an in-flight h2c request (GOAWAY lets open streams complete)", async () => {
    const { testApp, stalled, release } = await appWithStalledKeyFetch();
    const sessionManager = new Http2SessionManager(testApp.url);
    let closing: Promise<void> | undefined;
    try {
      const { idToken } = await op.obtainIdToken({ sub: uniqueSub("drain-h2") });
      const client = createClient(
        AuthService,
        createConnectTransport({ baseUrl: testApp.url, httpVersion: "2", sessionManager }),
      );
      const inFlight = client.signinWithIdToken({ idToken, provider: "acme" });
      await Promise.race([stalled, inFlight]);
      closing = testApp.close();
      release();
      const login = await inFlight;
      expect(login.userId).toMatch(/^usr_/);
      expect(login.accessToken).toEqual(expect.any(String));
    } finally {
      release();
      sessionManager.abort();
      await (closing ?? testApp.close());
    }
  });

  it("returns promptly when clients hold idle keep-alive connections", async () => {
    const testApp = await startTestApp();
    const agent = new http.Agent({ keepAlive: true });
    try {
      await new Promise<void>((resolve, reject) => {
        http
          .get(`${testApp.url}/healthz`, { agent }, (res) => {
            res.resume();
            res.on("end", resolve);
          })
          .on("error", reject);
      });
      const started = performance.now();
      await testApp.close();
      // The idle socket is closed by the server at once, not when some keep-alive timer expires.
      expect(performance.now() - started).toBeLessThan(1000);
    } finally {
      agent.destroy();
    }
  });
});

describe("development OpenID issuer", () => {
  it('mints an ID token that signs in with provider "dev", only in dev mode', async () => {
    const dev = await startTestApp({ config: { dev: true } });
    try {
      const mint = await fetch(`${dev.url}/dev/oidc/token`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ sub: "dev-alice", email: "alice@dev.example" }),
      });
      expect(mint.status).toBe(200);
      const minted = (await mint.json()) as { id_token: string; provider: string };
      expect(minted.provider).toBe("dev");

      const res = await restSignin(dev.url, { id_token: minted.id_token, provider: "dev" });
      expect(res.status).toBe(200);
      const login = expectSnakeCaseLogin(res.body);
      await expectLogin(dev.url, login);
      expect(login.user).toMatchObject({ email: "alice@dev.example", username: "alice" });

      const bad = await fetch(`${dev.url}/dev/oidc/token`, { method: "POST", body: "{}" });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as Record<string, unknown>)["code"]).toBe("invalid_request");
    } finally {
      await dev.close();
    }

    const prod = await startTestApp();
    try {
      const res = await fetch(`${prod.url}/dev/oidc/token`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ sub: "dev-alice" }),
      });
      expect(res.status).toBe(404);
      const header = Buffer.from(JSON.stringify({ alg: "RS256", typ: "JWT" })).toString("base64url");
      const refused = await restSignin(prod.url, { id_token: `${header}.e30.c2ln`, provider: "dev" });
      expect(refused.body["code"]).toBe("provider_unknown");
    } finally {
      await prod.close();
    }
  });
});
