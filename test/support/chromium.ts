/**
 * Debian's Chromium driven by playwright-core (which never downloads a browser of its own), for
 * the browser e2e tests. `/usr/bin/chromium` or CHROMIUM_PATH; .ci/run installs it. Without it
 * the suites that need it skip here (`describe(name, BROWSER_SUITE, …)`, see skips.ts) and fail
 * in CI.
 */
import { existsSync } from "node:fs";
import { type Browser, chromium } from "playwright-core";
import { needs } from "./skips.ts";

export const CHROMIUM = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";
const HAVE_CHROMIUM = existsSync(CHROMIUM);

/** Options for a suite that drives Chromium. */
export const BROWSER_SUITE = needs(
  "Chromium",
  HAVE_CHROMIUM ? undefined : `no browser at ${CHROMIUM}; apt-get install -y chromium, or set CHROMIUM_PATH`,
);

/** A headless Chromium; throws (in CI) when there is none. */
export async function launchChromium(): Promise<Browser> {
  if (!HAVE_CHROMIUM) {
    throw new Error(
      `no Chromium at ${CHROMIUM}: the browser e2e tests need it (CI=true, so this fails instead of skipping). ` +
        "Install it with `apt-get install -y chromium` (.ci/run does) or set CHROMIUM_PATH.",
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
