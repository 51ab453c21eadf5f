/**
 * Debian's Chromium driven by playwright-core (which never downloads a browser of its own), for
 * the browser e2e tests. `/usr/bin/chromium` or CHROMIUM_PATH; .ci/run installs it. In CI a
 * missing browser fails the suites that need it; locally they skip with a note.
 */
import { existsSync } from "node:fs";
import { type Browser, chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const HAVE_CHROMIUM = existsSync(CHROMIUM);
export const IN_CI = !["", "0", "false"].includes((process.env.CI ?? "").toLowerCase());
/** Whether a suite needing Chromium is skipped here (no browser, not CI). */
export const SKIP_BROWSER_TESTS = !HAVE_CHROMIUM && !IN_CI;

/** Warns once per file that its browser suite is skipped, saying how to get Chromium. */
export function noteSkippedBrowserTests(file: string): void {
  if (SKIP_BROWSER_TESTS) {
    console.warn(`${file}: skipped, no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
  }
}

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
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}
