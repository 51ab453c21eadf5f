/**
 * Starts that must not happen, on the real process: each is refused with one line per reason
 * naming the key to set, exit 2, no stack trace, and nothing created (issue 17).
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { runMain } from "../support/service-process.ts";

const STACK_LINE = /^\s+at .+:\d+:\d+\)?$/m;
const PROVIDER = { acme: { issuer: "https://issuer.example", client_ids: ["app"] } };

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "identity-refusal-"));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** `node src/main.ts` (production: no --dev) in an empty working directory with this config file. */
function serveProduction(config: Record<string, unknown>, env: Record<string, string> = {}) {
  const cwd = tempDir();
  writeFileSync(join(cwd, "config.yaml"), stringify({ server: { host: "127.0.0.1", port: 0 }, ...config }));
  const run = runMain([], { cwd, env });
  return { ...run, created: readdirSync(cwd).filter((f) => f !== "config.yaml") };
}

describe("production (no --dev) without what it needs", () => {
  it("no configuration at all: refused naming providers and data_dir, exit 2, nothing created (dev mode's ./data untouched)", () => {
    const run = serveProduction({});
    expect(run.status, run.stderr).toBe(2);
    expect(run.stderr).toMatch(/^ConfigError: refusing to serve in production \(without --dev\):\n/);
    expect(run.stderr).toContain("  providers: none configured, so nobody could sign in. Add one under `providers:`");
    expect(run.stderr).toContain("  data_dir: not set. Production has no default data directory");
    expect(run.stderr).not.toMatch(STACK_LINE);
    expect(run.stdout).not.toContain('"msg":"listening"');
    expect(run.created).toEqual([]);
  });

  it("a provider but no data directory: refused naming data_dir (DATA_DIR), also with a database URL but no key-encryption key", () => {
    for (const env of [{} as Record<string, string>, { DATABASE_URL: "file:./elsewhere/identity.db" }]) {
      const run = serveProduction({ providers: PROVIDER }, env);
      expect(run.status, run.stderr).toBe(2);
      expect(run.stderr).toContain("data_dir: not set");
      expect(run.stderr).toContain("Set DATA_DIR (data_dir)");
      expect(run.stderr).not.toContain("providers:");
      expect(run.created).toEqual([]);
    }
  });

  it("the tools keep dev mode's ./data when data_dir is unset (they find what `npm start` made); DATA_DIR moves them", () => {
    const cwd = tempDir();
    const dev = runMain(["migrate"], { cwd });
    expect(dev.status, dev.stderr).toBe(0);
    expect(existsSync(join(cwd, "data", "identity.db"))).toBe(true);
    const prod = runMain(["migrate"], { cwd, env: { DATA_DIR: join(cwd, "prod") } });
    expect(prod.status, prod.stderr).toBe(0);
    expect(existsSync(join(cwd, "prod", "identity.db"))).toBe(true);
  });
});
