/**
 * Browsers are first-class callers: a real headless Chromium (the Debian package, driven by
 * playwright-core) loads a page from one loopback origin and calls the service on another, with
 * `@connectrpc/connect-web` (Connect JSON and gRPC-Web) and plain `fetch` (REST). So the browser
 * itself enforces CORS: preflights for JSON bodies and `Authorization`, the allow-origin check on
 * every response, and which response headers script may read (gRPC-Web errors travel in
 * `grpc-status*` headers, readable only when exposed).
 *
 * The page's script is test/e2e/browser/client.ts, bundled here with rolldown into memory.
 *
 * Chromium: test/support/chromium.ts (Debian's, driven by playwright-core); in CI a missing browser
 * fails this file, locally it skips it with a note.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { rolldown } from "rolldown";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.ts";
import { BROWSER_SUITE, launchChromium } from "../support/chromium.ts";
import { devIdToken, rowCounts, uniqueSub } from "../support/signin-e2e.ts";
import type { BrowserClient, Outcome } from "./browser/client.ts";

const ENTRY = fileURLToPath(new URL("./browser/client.ts", import.meta.url));

/** The test bundle of client.ts, built in memory. */
async function bundleClient(): Promise<string> {
  const bundle = await rolldown({ input: ENTRY, platform: "browser", logLevel: "warn" });
  try {
    const { output } = await bundle.generate({ format: "iife" });
    return output[0].code;
  } finally {
    await bundle.close();
  }
}

/** A static origin on 127.0.0.1 (its own port: its own origin) serving the page and its script. */
async function startStaticOrigin(script: string): Promise<{ origin: string; close(): Promise<void> }> {
  const page = `<!doctype html><html><head><meta charset="utf-8"><title>browser e2e</title>
<link rel="icon" href="data:,"></head><body><script src="/client.js"></script></body></html>`;
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" }).end(page);
    } else if (path === "/client.js") {
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8", "cache-control": "no-store" }).end(script);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The client the page's script installed. */
type PageGlobals = { identityBrowserClient: BrowserClient };

/** A fresh page on `origin` with the client loaded, and the console errors it logs. */
async function openPage(browser: Browser, origin: string): Promise<{ page: Page; consoleErrors: string[] }> {
  const page = await browser.newPage();
  const consoleErrors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(m.text());
  });
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => "identityBrowserClient" in globalThis);
  return { page, consoleErrors };
}

function valueOf<T>(outcome: Outcome<T>, what: string): T {
  if (!outcome.ok) throw new Error(`${what} failed in the browser: ${JSON.stringify(outcome.error)}`);
  return outcome.value;
}

describe("browser callers (headless Chromium, cross-origin)", BROWSER_SUITE, () => {
  let browser: Browser | undefined;
  let testApp: TestApp | undefined;
  let allowed: Awaited<ReturnType<typeof startStaticOrigin>> | undefined;
  let refused: Awaited<ReturnType<typeof startStaticOrigin>> | undefined;
  let api: string;

  beforeAll(async () => {
    const [script, launched] = await Promise.all([bundleClient(), launchChromium()]);
    browser = launched;
    // Two page origins: one the service allows, one it does not.
    allowed = await startStaticOrigin(script);
    refused = await startStaticOrigin(script);
    testApp = await startTestApp({ config: { dev: true, "server.cors.allowed_origins": [allowed.origin] } });
    api = testApp.url;
  });

  afterAll(async () => {
    await browser?.close();
    await Promise.all([allowed?.close(), refused?.close(), testApp?.close()]);
  });

  it("signs in over Connect JSON, gRPC-Web and REST from an allowed origin, and reads the user with a Bearer token", async () => {
    const { page } = await openPage(browser!, allowed!.origin);
    const sub = uniqueSub("browser");
    const r = await page.evaluate(
      ([api, sub]) => (globalThis as unknown as PageGlobals).identityBrowserClient.signin(api, sub),
      [api, sub] as const,
    );
    await page.close();

    // The page minted its own ID tokens: the dev issuer's plain JSON endpoint answers CORS too.
    expect(valueOf(r.mint, "minting through /dev/oidc/token")).toEqual({ status: 200, provider: "dev", tokens: 3 });

    const viaConnect = valueOf(r.connectSignin, "Connect SigninWithIdToken");
    expect(viaConnect).toEqual({
      userId: expect.stringMatching(/^usr_/),
      requiresMfa: false,
      tokenType: "Bearer",
      hasAccessToken: true,
      hasRefreshToken: true,
      email: `${sub}@example.com`,
    });
    const userId = viaConnect.userId;
    expect(valueOf(r.grpcWebSignin, "gRPC-Web SigninWithIdToken")).toEqual({ ...viaConnect, userId });

    // Authorization is not a CORS-safelisted header: these went through a preflight.
    expect(valueOf(r.connectMe, "Connect GetCurrentUser")).toEqual({ id: userId, email: `${sub}@example.com` });
    expect(valueOf(r.grpcWebMe, "gRPC-Web GetCurrentUser")).toEqual({ id: userId, email: `${sub}@example.com` });

    const rest = valueOf(r.restSignin, "REST POST /auth/id-token/signin");
    expect(rest.status).toBe(200);
    expect(rest.body).toMatchObject({ user_id: userId, requires_mfa: false, token_type: "Bearer" });
    expect(rest.body.access_token).toEqual(expect.any(String));
    // x-request-id is readable by script only because the server exposes it.
    expect(rest.requestId).toEqual(expect.any(String));
    const restMe = valueOf(r.restMe, "REST GET /auth/me");
    expect(restMe.status).toBe(200);
    expect(restMe.body).toMatchObject({ id: userId, email: `${sub}@example.com` });

    // The server agrees: one user for the three sign-ins.
    const users = await testApp!.app.database.client.user.findMany({ where: { email: `${sub}@example.com` } });
    expect(users.map((u) => u.id)).toEqual([userId]);
  });

  it("surfaces the ConnectError code and the ErrorInfo reason in the browser, over Connect and gRPC-Web", async () => {
    const { page } = await openPage(browser!, allowed!.origin);
    const r = await page.evaluate(
      (api) => (globalThis as unknown as PageGlobals).identityBrowserClient.rejections(api),
      api,
    );
    await page.close();

    const malformed = {
      name: "ConnectError",
      code: 3,
      codeName: "InvalidArgument",
      reason: "id_token_malformed",
      domain: "identity.v1",
    };
    expect(r.connectRejected).toEqual({ ok: false, error: { ...malformed, message: expect.any(String) } });
    // gRPC-Web: the status and details come in grpc-status* headers or body trailers; either way
    // the browser must be allowed to read them.
    expect(r.grpcWebRejected).toEqual({ ok: false, error: { ...malformed, message: expect.any(String) } });
    expect(r.restRejected).toEqual({
      ok: true,
      value: {
        status: 400,
        requestId: expect.any(String),
        body: expect.objectContaining({ code: "id_token_malformed", status: "invalid_argument" }),
      },
    });
    expect(r.connectUnauthenticated).toMatchObject({
      ok: false,
      error: { name: "ConnectError", codeName: "Unauthenticated" },
    });
  });

  it("refuses a page from an origin that is not in server.cors.allowed_origins", async () => {
    // The page cannot mint here (CORS), so Node mints a valid token and hands it over.
    const sub = uniqueSub("browser-refused");
    const idToken = await devIdToken(api, sub, { email: `${sub}@example.com`, email_verified: true });
    const before = await rowCounts(testApp!.app);

    const { page, consoleErrors } = await openPage(browser!, refused!.origin);
    const r = await page.evaluate(
      ([api, idToken]) => (globalThis as unknown as PageGlobals).identityBrowserClient.probe(api, idToken),
      [api, idToken] as const,
    );
    await page.close();

    // The browser blocks each call (failed preflight): connect-web reports a ConnectError that
    // carries no server code or reason, and fetch rejects with a TypeError.
    for (const [what, outcome] of [
      ["Connect", r.connect],
      ["gRPC-Web", r.grpcWeb],
    ] as const) {
      expect(outcome.ok, `${what} from a refused origin`).toBe(false);
      if (!outcome.ok) {
        expect(outcome.error.name).toBe("ConnectError");
        expect(outcome.error.reason).toBeUndefined();
      }
    }
    expect(r.rest).toMatchObject({ ok: false, error: { name: "TypeError" } });
    // …and says why.
    const corsErrors = consoleErrors.filter((m) =>
      m.includes(`from origin '${refused!.origin}' has been blocked by CORS policy`),
    );
    expect(corsErrors, consoleErrors.join("\n")).toHaveLength(3);
    // The preflight stopped everything: no request reached a handler.
    expect(await rowCounts(testApp!.app)).toEqual(before);
  });
});
