/**
 * Skipped tests say why. A suite that needs a part this machine may lack (a PostgreSQL server,
 * Chromium) is registered either way, so the run counts it; without the part it is skipped here,
 * tagged with what is missing and how to get it, and the run ends with one line naming them
 * (`SkipReport`, a vitest reporter wired in vitest.config.ts). In CI (`CI` set) nothing skips:
 * the suite runs and fails on the missing part.
 */
import type { SuiteOptions } from "vitest";
import type { Reporter, TestCase, TestModule, TestSuite } from "vitest/node";

declare module "vitest" {
  interface TaskMeta {
    /** Why the suite is skipped on this machine and how to run it; set through `needs`. */
    skippedFor?: string;
  }
}

export const IN_CI = !["", "0", "false"].includes((process.env["CI"] ?? "").toLowerCase());

/**
 * Options for a suite that needs `part`: skipped and tagged when `missing` (what is lacking and
 * how to get it) is given and this is not CI; plain options otherwise.
 */
export function needs(part: string, missing: string | undefined): SuiteOptions {
  return missing === undefined || IN_CI ? {} : { skip: true, meta: { skippedFor: `${part} (${missing})` } };
}

/** What a skipped test needs (from its suites' meta), "setup failed", or undefined: skipped by itself. */
function skippedFor(test: TestCase): string | undefined {
  for (let task: TestCase | TestSuite | TestModule = test; task.type !== "module"; task = task.parent) {
    const reason = task.meta().skippedFor;
    if (reason !== undefined) return reason;
    if (task.type === "suite" && task.state() === "failed") return SETUP_FAILED;
  }
  return undefined;
}

const SETUP_FAILED = "setup failed";

/** After the run: one line with the skipped tests, counted by what they need and how to run them. */
export class SkipReport implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const byReason = new Map<string, number>();
    let total = 0;
    for (const module of modules) {
      for (const test of module.children.allTests("skipped")) {
        total += 1;
        const reason = skippedFor(test) ?? "";
        byReason.set(reason, (byReason.get(reason) ?? 0) + 1);
      }
    }
    const parts = [...byReason].map(([reason, n]) =>
      reason === ""
        ? `${n} by it.skip, a -t filter or the platform`
        : reason === SETUP_FAILED
          ? `${n} not run because their suite's setup failed`
          : `${n} need ${reason}`,
    );
    process.stdout.write(total === 0 ? "\nSkipped: none.\n" : `\nSkipped ${total}: ${parts.join("; ")}.\n`);
  }
}
