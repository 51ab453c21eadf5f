/**
 * Passkeys in the web app, in a real headless Chromium with a virtual authenticator (CDP
 * `WebAuthn.enable` + `WebAuthn.addVirtualAuthenticator`: ctap2, internal transport, resident
 * keys, user verification): register one, rename it, sign in from a "new device" (the page's
 * device id forgotten) and answer the challenge with the passkey, then remove it; over Connect
 * and over gRPC-Web (@connectrpc/connect-web, @simplewebauthn/browser).
 *
 * The page is loaded from http://localhost:PORT, the configured public URL: the relying party
 * is derived from it (RP ID `localhost`; browsers take no IP address as an RP ID).
 * Screenshots of every step go to test-output/web/ (git-ignored).
 */
import { mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.ts";
import { BROWSER_SUITE, launchChromium } from "../support/chromium.ts";
import { uniqueSub } from "../support/signin-e2e.ts";

const SHOTS = fileURLToPath(new URL("../../test-output/web/", import.meta.url));

/** A port free right now (the public URL must name it before the server listens). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

describe("passkeys in the web app (headless Chromium, virtual authenticator)", BROWSER_SUITE, () => {
  let browser: Browser;
  let testApp: TestApp;
  let base: string;
  const cspViolations: string[] = [];

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    const port = await freePort();
    base = `http://localhost:${port}`;
    [browser, testApp] = await Promise.all([
      launchChromium(),
      startTestApp({ config: { dev: true, "server.port": port, "server.public_url": base } }),
    ]);
  });
  afterAll(async () => {
    await browser?.close();
    await testApp?.close();
  });

  async function pageWithAuthenticator(): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    context.setDefaultTimeout(10_000);
    const page = await context.newPage();
    page.on("console", (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    const cdp = await context.newCDPSession(page);
    await cdp.send("WebAuthn.enable");
    await cdp.send("WebAuthn.addVirtualAuthenticator", {
      options: {
        protocol: "ctap2",
        transport: "internal",
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    });
    await page.goto(`${base}/`);
    return page;
  }

  const shot = (page: Page, name: string) => page.screenshot({ path: `${SHOTS}${name}.png`, fullPage: true });

  async function signIn(page: Page, sub: string) {
    await page.getByLabel("Subject (sub)").fill(sub);
    await page.locator("#dev-form").getByRole("button", { name: "Sign in" }).click();
  }

  for (const [protocol, label] of [
    ["connect", "Connect"],
    ["grpc-web", "gRPC-Web"],
  ] as const) {
    it(`registers a passkey, answers a risky sign-in with it and removes it, over ${label}`, async () => {
      const page = await pageWithAuthenticator();
      const calls: string[] = [];
      page.on("request", (r) => {
        if (r.url().includes("/identity.v1."))
          calls.push(`${new URL(r.url()).pathname} ${r.headers()["content-type"]}`);
      });
      await page.getByLabel(label, { exact: true }).check();
      const sub = uniqueSub(`web-pk-${protocol}`);
      await signIn(page, sub);
      await page.locator("#account").waitFor();
      await page.locator("#passkeys-status").getByText("No passkey yet.").waitFor();

      // 1. Register: the browser's ceremony against the virtual authenticator.
      await page.getByLabel("Name for a new passkey").fill("Virtual key");
      await page.getByRole("button", { name: "Add a passkey" }).click();
      await page.locator("#notice").getByText("Passkey “Virtual key” added.").waitFor();
      const row = page.locator("#passkeys tbody tr");
      await row.first().waitFor();
      expect(await row.count()).toBe(1);
      expect(await row.first().locator("td").first().textContent()).toBe("Virtual key");
      expect(await row.first().locator("td").nth(2).textContent()).toBe("never");
      await shot(page, `pk-${protocol}-01-registered`);
      const userId = JSON.parse((await page.locator("#raw-json").textContent())!)["user_id"] as string;
      const stored = await testApp.app.database.client.webauthnCredential.findFirstOrThrow({ where: { userId } });
      expect(JSON.parse(stored.transports)).toContain("internal");

      // 2. Rename it.
      page.once("dialog", (d) => void d.accept("Laptop key"));
      await row
        .first()
        .getByRole("button", { name: /^Rename/ })
        .click();
      await page.locator("#notice").getByText("The passkey is renamed.").waitFor();
      await page.locator("#passkeys tbody tr td").getByText("Laptop key").waitFor();

      // 2b. Removing it now is a factor change without a recent second factor (the sign-in had
      // none): refused, and the page offers the passkey step-up (no code: there is no TOTP).
      await row
        .first()
        .getByRole("button", { name: /^Remove/ })
        .click();
      await page.locator("#error-code").getByText("reauthentication_required").waitFor();
      expect(await page.locator("#step-up-passkey").isVisible()).toBe(true);
      expect(await page.locator("#step-up-code-form").isVisible()).toBe(false);
      await shot(page, `pk-${protocol}-02b-step-up-offered`);
      await page.getByRole("button", { name: "Confirm with a passkey" }).click();
      await page
        .locator("#notice")
        .getByText(/^Confirmed: you can change your second factors/)
        .waitFor();
      const stepped = await testApp.app.database.client.session.findMany({ where: { userId, mfaAt: { not: null } } });
      expect(stepped).toHaveLength(1);
      expect(JSON.parse(stepped[0]!.amr)).toEqual(expect.arrayContaining(["pop", "mfa"]));
      expect(await row.count()).toBe(1);

      // 3. Sign out, act as a new device, sign in: a challenge the passkey answers.
      await page.getByRole("button", { name: "Sign out", exact: true }).click();
      await page.locator("#signin").waitFor();
      await page.locator("#device-forget").click();
      await signIn(page, sub);
      await page.locator("#challenge").waitFor();
      expect(await page.locator("#challenge-why").textContent()).toContain("new_device");
      expect(await page.locator("#challenge-passkey").isVisible()).toBe(true);
      await shot(page, `pk-${protocol}-02-challenge`);
      await page.getByRole("button", { name: "Use a passkey" }).click();
      await page.locator("#account").waitFor();
      expect(await page.locator("#raw-rpc").textContent()).toBe("(VerifyMfa)");
      expect(await page.locator("#token-fields").textContent()).toMatch(/Methods \(amr\).*pop.*mfa/);
      await page.locator("#passkeys tbody tr td").getByText("Laptop key").waitFor();
      // Polled: the table of the signed-out session stays in the page until the account reloads.
      await expect.poll(() => page.locator("#passkeys tbody tr td").nth(2).textContent()).not.toBe("never");
      await shot(page, `pk-${protocol}-03-signed-in-with-passkey`);

      // 4. Remove it.
      await page
        .locator("#passkeys tbody tr")
        .first()
        .getByRole("button", { name: /^Remove/ })
        .click();
      await page.locator("#notice").getByText("The passkey is removed.").waitFor();
      await page.locator("#passkeys-status").getByText("No passkey yet.").waitFor();
      expect(await testApp.app.database.client.webauthnCredential.count({ where: { userId } })).toBe(0);
      await shot(page, `pk-${protocol}-04-removed`);

      const contentType = protocol === "connect" ? "application/json" : "application/grpc-web+proto";
      for (const rpc of [
        "MfaService/BeginStepUp",
        "MfaService/StepUp",
        "MfaService/BeginPasskeyRegistration",
        "MfaService/FinishPasskeyRegistration",
        "AuthService/BeginWebauthnMfa",
        "AuthService/VerifyMfa",
        "MfaService/RemovePasskey",
      ]) {
        expect(calls).toContain(`/identity.v1.${rpc} ${contentType}`);
      }
      expect(cspViolations).toEqual([]);
    }, 60_000);
  }
});
