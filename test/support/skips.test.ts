import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * test/support/skips.ts in a real vitest run over a small suite: a PostgreSQL suite, a test
 * skipped by itself and a plain test, without TEST_DATABASE_URL, here and in CI.
 */
describe("skipped suites say why", () => {
  let dir: string;
  beforeAll(() => {
    // Inside the repository (test-output/ is ignored), so the fixture's config resolves vitest.
    mkdirSync("test-output", { recursive: true });
    dir = resolve(mkdtempSync(join("test-output", "skips-test-")));
    const support = resolve("test/support");
    writeFileSync(
      join(dir, "fixture.test.ts"),
      `import { beforeAll, describe, it } from "vitest";
import { postgresKind } from ${JSON.stringify(join(support, "databases.ts"))};
const kind = postgresKind();
describe("on PostgreSQL", kind.suiteOptions, () => {
  beforeAll(async () => { await kind.create(); });
  it("one", () => {});
  it("two", () => {});
});
it.skip("skipped by itself", () => {});
it("runs", () => {});
`,
    );
    writeFileSync(
      join(dir, "vitest.config.ts"),
      `import { defineConfig } from "vitest/config";
import { SkipReport } from ${JSON.stringify(join(support, "skips.ts"))};
export default defineConfig({ test: { include: ["fixture.test.ts"], reporters: ["default", new SkipReport()] } });
`,
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function runFixture(env: Record<string, string | undefined>): { status: number | null; lastLine: string } {
    const { TEST_DATABASE_URL: _url, CI: _ci, ...rest } = process.env;
    const result = spawnSync(process.execPath, [resolve("node_modules/vitest/vitest.mjs"), "run", "--root", dir], {
      cwd: dir,
      env: { ...rest, ...env, NO_COLOR: "1" },
      encoding: "utf8",
      timeout: 60_000,
    });
    return { status: result.status, lastLine: result.stdout.trim().split("\n").at(-1) ?? "" };
  }

  it(
    "locally: PostgreSQL suites are counted as skipped, and the last line says why and how to run them",
    { timeout: 60_000 },
    () => {
      const { status, lastLine } = runFixture({});
      expect(status).toBe(0);
      expect(lastLine).toBe(
        'Skipped 3: 2 need PostgreSQL (TEST_DATABASE_URL is unset; eval "$(bash .ci/postgres.sh start)" first); 1 by it.skip, a -t filter or the platform.',
      );
    },
  );

  it("in CI: a missing PostgreSQL fails the run instead of skipping", { timeout: 60_000 }, () => {
    const { status, lastLine } = runFixture({ CI: "true" });
    expect(status).toBe(1);
    expect(lastLine).toBe(
      "Skipped 3: 2 not run because their suite's setup failed; 1 by it.skip, a -t filter or the platform.",
    );
  });
});
