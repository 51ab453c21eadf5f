/**
 * The web app at `/` (web/, built into gen/web/ by `npm run generate`), served by the service
 * itself: the static answers (types, CSP, caching, when it is served at all), and a person's path
 * through it in a real headless Chromium (test/support/chromium.ts): sign in, set up TOTP from
 * the secret the page shows, sign in from a new device, answer the challenge, see the tokens,
 * end the other session, refresh, sign out; and a sign-in over gRPC-Web with the automatic
 * refresh before expiry.
 *
 * Screenshots of every step go to test-output/web/ (git-ignored), to look at.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Secret, TOTP, URI } from "otpauth";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WEB_APP_CSP } from "../../src/rpc/web-app.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { BROWSER_SUITE, launchChromium } from "../support/chromium.ts";
import { createMovableClock, uniqueSub } from "../support/signin-e2e.ts";

const GEN_WEB = fileURLToPath(new URL("../../gen/web/", import.meta.url));
const SHOTS = fileURLToPath(new URL("../../test-output/web/", import.meta.url));

/** The asset paths index.html names (hashed file names). */
function assetPaths(html: string): { script: string; style: string } {
  const script = /<script defer src="(\/web\/app-[0-9a-f]{12}\.js)"><\/script>/.exec(html)?.[1];
  const style = /<link rel="stylesheet" href="(\/web\/style-[0-9a-f]{12}\.css)"\s*\/?>/.exec(html)?.[1];
  if (script === undefined || style === undefined) throw new Error(`index.html names no hashed assets:\n${html}`);
  return { script, style };
}

describe("the web app is served by the service", () => {
  const apps: TestApp[] = [];
  const start = async (config: Record<string, unknown>) => {
    const app = await startTestApp({ config });
    apps.push(app);
    return app.url;
  };
  afterAll(() => Promise.all(apps.map((a) => a.close())));

  it("in dev mode: the page with a strict CSP, revalidated; its hashed assets cacheable for good", async () => {
    const url = await start({ dev: true });
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(page.headers.get("content-security-policy")).toBe(WEB_APP_CSP);
    expect(WEB_APP_CSP).toContain("script-src 'self'");
    expect(WEB_APP_CSP).not.toContain("unsafe");
    expect(page.headers.get("cache-control")).toBe("no-cache");
    expect(page.headers.get("x-content-type-options")).toBe("nosniff");
    const html = await page.text();
    expect(html).toContain('data-dev-issuer="on"');

    const { script, style } = assetPaths(html);
    for (const [path, type] of [
      [script, "text/javascript; charset=utf-8"],
      [style, "text/css; charset=utf-8"],
    ] as const) {
      const res = await fetch(`${url}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type")).toBe(type);
      expect(res.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
      // What is served is the committed build.
      const built = readFileSync(`${GEN_WEB}${path.slice("/web/".length)}`);
      expect(res.headers.get("content-length")).toBe(String(built.length));
      expect(await res.text()).toBe(built.toString("utf8"));
    }
    const missing = await fetch(`${url}/web/app-000000000000.js`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: "not_found" });
  });

  it("outside dev mode: not served by default", async () => {
    const url = await start({});
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(404);
    expect(await page.json()).toMatchObject({ code: "not_found" });
    const html = readFileSync(`${GEN_WEB}index.html`, "utf8");
    expect((await fetch(`${url}${assetPaths(html).script}`)).status).toBe(404);
  });

  it("outside dev mode with server.web_app: true, without the dev-issuer panel", async () => {
    const url = await start({ "server.web_app": true });
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-security-policy")).toBe(WEB_APP_CSP);
    const html = await page.text();
    expect(html).toContain('data-dev-issuer="off"');
    expect((await fetch(`${url}${assetPaths(html).script}`)).status).toBe(200);
    // And no dev issuer to mint with.
    expect((await fetch(`${url}/dev/oidc/token`, { method: "POST", body: "{}" })).status).toBe(404);
  });

  it("in dev mode with server.web_app: false, not served", async () => {
    const url = await start({ dev: true, "server.web_app": false });
    expect((await fetch(`${url}/`)).status).toBe(404);
  });
});

describe("a person's path through the web app (headless Chromium)", BROWSER_SUITE, () => {
  let browser: Browser;
  let testApp: TestApp;
  /** Content-Security-Policy violations any page reported: there must be none. */
  const cspViolations: string[] = [];

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    [browser, testApp] = await Promise.all([launchChromium(), startTestApp({ config: { dev: true } })]);
  });

  afterAll(async () => {
    await browser?.close();
    await testApp?.close();
  });

  /** A page in a browser context of its own: its own localStorage, so its own device id. */
  async function newDevice(options: { clock?: boolean } = {}): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    // A step that never happens fails with what was awaited, well inside the test's own timeout.
    context.setDefaultTimeout(10_000);
    const page = await context.newPage();
    page.on("console", (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    if (options.clock === true) await page.clock.install();
    await page.goto(`${testApp.url}/`);
    return page;
  }

  async function shot(page: Page, name: string): Promise<void> {
    await page.screenshot({ path: `${SHOTS}${name}.png`, fullPage: true });
  }

  async function signIn(page: Page, sub: string): Promise<void> {
    await page.getByLabel("Subject (sub)").fill(sub);
    await page.locator("#dev-form").getByRole("button", { name: "Sign in" }).click();
  }

  async function sessionRows(page: Page) {
    return page.locator("#sessions tbody tr");
  }

  it("signs in, sets up TOTP, is challenged on a new device, ends the other session, refreshes and signs out", async () => {
    const sub = uniqueSub("web");

    // 1. A new user signs in: low risk, nothing fired, tokens with a countdown.
    const first = await newDevice();
    await first.locator("#dev-panel").waitFor();
    await shot(first, "01-sign-in");
    await signIn(first, sub);
    await first.locator("#account").waitFor();
    expect(await first.locator("#risk-level").textContent()).toBe("low risk");
    expect(await first.locator("#risk-signals").textContent()).toContain("None");
    expect(await first.locator("#user-name").textContent()).toBe(sub);
    expect(await first.locator("#user-email").textContent()).toBe(`${sub}@example.com`);
    expect(await first.locator("#token-countdown").textContent()).toMatch(/^(30:00|29:[0-5]\d)$/);
    const raw = JSON.parse((await first.locator("#raw-json").textContent())!) as Record<string, unknown>;
    expect(raw).toMatchObject({ requires_mfa: false, risk_level: "low", token_type: "Bearer", expires_in: 1800 });
    const userId = raw["user_id"] as string;
    await first.locator("#mfa-status").getByText("No authenticator app yet").waitFor();
    await shot(first, "02-signed-in-low-risk");

    // 2. TOTP: the page shows the secret and a QR code of the otpauth URI; confirm with a code.
    await first.getByRole("button", { name: "Set up an authenticator app" }).click();
    await first.locator("#totp-setup").waitFor();
    const secret = (await first.locator("#totp-secret").textContent())!;
    expect(secret).toMatch(/^[A-Z2-7]{32,}$/);
    const uri = (await first.locator("#totp-uri").textContent())!;
    expect((URI.parse(uri) as TOTP).secret.base32).toBe(secret);
    expect(
      await first
        .getByRole("img", { name: /QR code/ })
        .locator("path")
        .getAttribute("d"),
    ).toMatch(/^M\d+ \d+h1v1h-1z/);
    await shot(first, "03-totp-qr");
    const totp = new TOTP({ secret: Secret.fromBase32(secret), algorithm: "SHA1", digits: 6, period: 30 });
    await first.getByLabel("Code from the app").fill(totp.generate());
    await first.getByRole("button", { name: "Confirm" }).click();
    await first.locator("#recovery").waitFor();
    expect(await first.locator("#recovery-codes li").count()).toBe(10);
    await first.locator("#mfa-status").getByText("TOTP is set up; 10 recovery code(s) left.").waitFor();
    await shot(first, "04-recovery-codes-once");
    await first.getByRole("button", { name: "I have stored them" }).click();
    await first.locator("#recovery").waitFor({ state: "hidden" });
    expect(await first.locator("#recovery-codes li").count()).toBe(0);

    // 3. A new device (fresh storage, so a new device id): medium risk, new_device, a challenge.
    const second = await newDevice();
    expect(await second.locator("#device-id").textContent()).not.toBe(await first.locator("#device-id").textContent());
    await signIn(second, sub);
    await second.locator("#challenge").waitFor();
    expect(await second.locator("#challenge-why").textContent()).toContain("medium risk (new_device)");
    expect(await second.locator("#risk-signals").textContent()).toContain("new_device");
    expect(await second.locator("#tokens-none").isVisible()).toBe(true);
    await shot(second, "05-mfa-challenge");

    // 4. The code (the next time step: the confirmation spent this one), trusting the device.
    await second.getByLabel("Code", { exact: true }).fill(totp.generate({ timestamp: Date.now() + 30_000 }));
    await second.getByLabel(/Trust this device/).check();
    await second.getByRole("button", { name: "Verify" }).click();
    await second.locator("#account").waitFor();
    expect(await second.locator("#raw-rpc").textContent()).toBe("(VerifyMfa)");
    expect(await second.locator("#token-fields").textContent()).toMatch(/Methods \(amr\).*otp.*mfa/);
    expect(await second.locator("#tokens-some").isVisible()).toBe(true);
    // Trusted: the device credential is kept in this browser, not shown, and stored hashed.
    await second.locator("#trust-status").getByText("This browser is trusted").waitFor();
    const credential = await second.evaluate(() => localStorage.getItem("idtoken-signin.device_credential"));
    expect(credential).toMatch(/^tdc_[A-Za-z0-9_-]{43}$/);
    expect(await second.locator("body").textContent()).not.toContain(credential!);
    const trustedRows = await testApp.app.database.client.trustedDevice.findMany({ where: { userId } });
    expect(trustedRows.map((r) => r.credentialHash)).toEqual([
      createHash("sha256").update(credential!).digest("base64url"),
    ]);

    // 5. Two sessions; this one is marked; revoke the other.
    await second.locator("#sessions tbody tr").nth(1).waitFor();
    expect(await (await sessionRows(second)).count()).toBe(2);
    await shot(second, "06-tokens-after-mfa-and-sessions");
    const other = second.locator("#sessions tbody tr", { hasNot: second.getByText("this session") });
    const otherId = await other.getAttribute("data-session-id");
    await other.getByRole("button", { name: /^Revoke/ }).click();
    await second.locator("#notice").getByText("The other session is ended").waitFor();
    await second.locator(`#sessions tbody tr[data-session-id="${otherId}"]`).waitFor({ state: "detached" });
    expect(await (await sessionRows(second)).count()).toBe(1);
    await shot(second, "07-other-session-revoked");
    const revoked = await testApp.app.database.client.session.findUnique({ where: { id: otherId! } });
    expect(revoked?.revokedAt).not.toBeNull();

    // 6. The first device finds out at its next refresh: the stable code and message, then sign-in.
    await first.getByRole("button", { name: "Refresh now" }).click();
    await first.locator("#error").waitFor();
    expect(await first.locator("#error-code").textContent()).toMatch(/^(session_revoked|refresh_token_invalid)$/);
    expect(await first.locator("#error-status").textContent()).toBe("(Unauthenticated)");
    expect(await first.locator("#signin").isVisible()).toBe(true);
    await shot(first, "08-revoked-device-error");

    // 7. Refresh on the second device: the refresh token rotates, and the page shows it.
    const before = JSON.parse((await second.locator("#raw-json").textContent())!) as Record<string, string>;
    await second.getByRole("button", { name: "Refresh now" }).click();
    await second
      .locator("#rotations li")
      .getByText(/manual/)
      .waitFor();
    const after = JSON.parse((await second.locator("#raw-json").textContent())!) as Record<string, string>;
    expect(after["refresh_token"]).not.toBe(before["refresh_token"]);
    expect(after["access_token"]).not.toBe(before["access_token"]);
    expect(await second.locator("#rotations").textContent()).toContain(before["refresh_token"]!.slice(0, 8));
    expect(await second.locator("#raw-rpc").textContent()).toBe("(RefreshToken)");
    await shot(second, "09-refreshed-rotation");

    // 8. "Forget this device": the service stops trusting the credential, the page drops it.
    await second.getByRole("button", { name: "Forget this device" }).click();
    await second.locator("#notice").getByText("This device is forgotten").waitFor();
    expect(await second.evaluate(() => localStorage.getItem("idtoken-signin.device_credential"))).toBeNull();
    expect(await second.locator("#trust-forget").isVisible()).toBe(false);
    expect(await testApp.app.database.client.trustedDevice.count({ where: { userId } })).toBe(0);
    await shot(second, "10-device-forgotten");

    // 9. Sign out: this session ends, the page is back at sign-in.
    await second.getByRole("button", { name: "Sign out", exact: true }).click();
    await second.locator("#notice").getByText("Signed out: 1 session(s) ended.").waitFor();
    expect(await second.locator("#signin").isVisible()).toBe(true);
    expect(await second.locator("#account").isVisible()).toBe(false);
    await shot(second, "11-signed-out");
    const open = await testApp.app.database.client.session.count({ where: { userId, revokedAt: null } });
    expect(open).toBe(0);

    expect(cspViolations).toEqual([]);
  }, 90_000);

  it("signs in over gRPC-Web, and refreshes by itself a minute before the access token expires", async () => {
    const page = await newDevice({ clock: true });
    const calls: { path: string; contentType: string | undefined }[] = [];
    page.on("request", (r) => {
      if (r.url().includes("/identity.v1."))
        calls.push({ path: new URL(r.url()).pathname, contentType: r.headers()["content-type"] });
    });
    await page.getByLabel("gRPC-Web").check();
    await page.locator("#notice").getByText("Calls now use gRPC-Web.").waitFor();
    const sub = uniqueSub("web-grpc");
    await signIn(page, sub);
    await page.locator("#account").waitFor();
    expect(await page.locator("#risk-level").textContent()).toBe("low risk");
    await page.locator("#sessions tbody tr").first().waitFor();
    expect(calls[0]).toEqual({
      path: "/identity.v1.AuthService/SigninWithIdToken",
      contentType: "application/grpc-web+proto",
    });
    expect(calls.every((c) => c.contentType === "application/grpc-web+proto")).toBe(true);
    expect(await page.locator("#last-call").textContent()).toMatch(/over gRPC-Web/);
    await shot(page, "11-grpc-web-signed-in");

    // The page's clock jumps to a minute before expiry: the countdown says so, and the page
    // refreshes on its own over gRPC-Web.
    const before = JSON.parse((await page.locator("#raw-json").textContent())!) as Record<string, string>;
    await page.clock.fastForward("29:01");
    await page
      .locator("#rotations li")
      .getByText(/automatic/)
      .waitFor();
    const after = JSON.parse((await page.locator("#raw-json").textContent())!) as Record<string, string>;
    expect(after["refresh_token"]).not.toBe(before["refresh_token"]);
    expect(calls.at(-1)).toEqual({
      path: "/identity.v1.AuthService/RefreshToken",
      contentType: "application/grpc-web+proto",
    });
    expect(await page.locator("#token-countdown").textContent()).toMatch(/^(30:00|29:[0-5]\d)$/);
    await shot(page, "12-grpc-web-auto-refresh");

    // An error over gRPC-Web is shown the same way: a wrong code when confirming TOTP.
    await page.getByRole("button", { name: "Set up an authenticator app" }).click();
    await page.getByLabel("Code from the app").fill("000000");
    await page.getByRole("button", { name: "Confirm" }).click();
    await page.locator("#error").waitFor();
    expect(await page.locator("#error-code").textContent()).toBe("mfa_code_invalid");
    expect(await page.locator("#error-status").textContent()).toBe("(PermissionDenied)");
    await shot(page, "13-grpc-web-error");

    // Narrow screens: everything in one column, nothing wider than the viewport.
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth");
    expect(overflow).toBe(0);
    await shot(page, "14-narrow-screen");

    expect(cspViolations).toEqual([]);
  }, 60_000);

  it("a sign-in too old to add a second factor: the page says to sign in again, and setting up works after that", async () => {
    const clock = createMovableClock();
    const app = await startTestApp({ config: { dev: true }, overrides: { clock } });
    try {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      context.setDefaultTimeout(10_000);
      const page = await context.newPage();
      await page.goto(`${app.url}/`);
      const sub = uniqueSub("web-stepup");
      await signIn(page, sub);
      await page.locator("#mfa-status").getByText("No authenticator app yet").waitFor();
      // Eleven minutes on the service's clock: more than mfa.step_up_max_age_seconds (600).
      clock.advance(11 * 60_000);
      await page.getByRole("button", { name: "Set up an authenticator app" }).click();
      await page.locator("#error").waitFor();
      expect(await page.locator("#error-code").textContent()).toBe("reauthentication_required");
      expect(await page.locator("#error-message").textContent()).toMatch(
        /needs a recent sign-in\. Sign out, sign in again, then set it up within 10 minutes/,
      );
      expect(await page.locator("#totp-setup").isHidden()).toBe(true);
      await shot(page, "15-step-up-needed");

      // Signed in again: set-up starts.
      await page.getByRole("button", { name: "Sign out", exact: true }).click();
      await signIn(page, sub);
      await page.getByRole("button", { name: "Set up an authenticator app" }).click();
      await page.locator("#totp-setup").waitFor();
      await context.close();
    } finally {
      await app.close();
    }
  }, 60_000);

  it("a factor change on a stale session (a TOTP user adding a passkey): the page offers the code step-up, which allows it", async () => {
    const clock = createMovableClock();
    const app = await startTestApp({ config: { dev: true }, overrides: { clock } });
    try {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      context.setDefaultTimeout(10_000);
      const page = await context.newPage();
      await page.goto(`${app.url}/`);
      await signIn(page, uniqueSub("web-stepup-code"));
      await page.getByRole("button", { name: "Set up an authenticator app" }).click();
      await page.locator("#totp-setup").waitFor();
      const totp = new TOTP({
        secret: Secret.fromBase32((await page.locator("#totp-secret").textContent())!),
        algorithm: "SHA1",
        digits: 6,
        period: 30,
      });
      await page.getByLabel("Code from the app").fill(totp.generate({ timestamp: clock.now().getTime() }));
      await page.getByRole("button", { name: "Confirm" }).click();
      await page.locator("#recovery").waitFor();
      await page.getByRole("button", { name: "I have stored them" }).click();

      // Eleven minutes on the service's clock: adding a passkey needs the second factor again.
      clock.advance(11 * 60_000);
      await page.getByRole("button", { name: "Add a passkey" }).click();
      await page.locator("#error-code").getByText("reauthentication_required").waitFor();
      expect(await page.locator("#step-up-code-form").isVisible()).toBe(true);
      expect(await page.locator("#step-up-passkey").isVisible()).toBe(false);
      await shot(page, "16-step-up-offered");
      // Two steps on: the step the confirmation used is spent.
      await page
        .getByLabel("Code from your authenticator app")
        .fill(totp.generate({ timestamp: clock.now().getTime() + 30_000 }));
      await page.getByRole("button", { name: "Confirm with a code" }).click();
      await page
        .locator("#notice")
        .getByText(/^Confirmed: you can change your second factors for the next 10 minutes/)
        .waitFor();
      const userId = (
        await app.app.database.client.user.findFirstOrThrow({
          where: { username: { startsWith: "web-stepup-code" } },
          select: { id: true },
        })
      ).id;
      expect(await app.app.database.client.auditEvent.count({ where: { userId, type: "mfa.step_up" } })).toBe(1);
      await context.close();
    } finally {
      await app.close();
    }
  }, 60_000);

  it("outside dev mode (server.web_app: true): no dev-issuer panel, a pasted ID token, the service's refusal shown", async () => {
    const prod = await startTestApp({ config: { "server.web_app": true } });
    try {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      context.setDefaultTimeout(10_000);
      const page = await context.newPage();
      await page.goto(`${prod.url}/`);
      await page.locator("#app-panel").getByText("A real app obtains the ID token from its OpenID provider").waitFor();
      expect(await page.locator("#dev-panel").isVisible()).toBe(false);
      await page.getByLabel("ID token").fill("not-a-jwt");
      await page.locator("#token-form").getByRole("button", { name: "Sign in" }).click();
      await page.locator("#error").waitFor();
      expect(await page.locator("#error-code").textContent()).toBe("id_token_malformed");
      expect(await page.locator("#error-status").textContent()).toBe("(InvalidArgument)");
      await shot(page, "15-web-app-outside-dev-mode");
    } finally {
      await prod.close();
    }
  });
});
