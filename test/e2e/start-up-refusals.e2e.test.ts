/**
 * Starts that must not happen, on the real process: each is refused with one line per reason
 * naming the setting, what failed and what to check; no stack trace, nothing created.
 * Exit 2: the configuration is wrong. Exit 3: the database cannot be reached or opened.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { freePort, runMain } from "../support/service-process.ts";

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

/** `node src/main.ts --dev ARGS` in an empty working directory, with this environment. */
function runInEmptyDir(args: string[], env: Record<string, string>) {
  const cwd = tempDir();
  const run = runMain(args, { cwd, env });
  return { ...run, cwd, created: readdirSync(cwd) };
}

/** The refusal is one line on stderr, and nothing else was printed or created. */
function expectOneLine(run: ReturnType<typeof runInEmptyDir>, status: number): string {
  expect(run.status, run.stderr + run.stdout).toBe(status);
  expect(run.stderr.split("\n").filter((l) => l !== "")).toHaveLength(1);
  expect(run.stderr).not.toMatch(STACK_LINE);
  expect(run.stdout).not.toContain('"msg":"listening"');
  return run.stderr;
}

describe("database start-up errors: one line naming DATABASE_URL, what failed and what to check", () => {
  it("a scheme other than file: or postgresql:// is refused at config validation (exit 2), the rest of the URL never printed", () => {
    const mysql = runInEmptyDir(["--dev"], { DATABASE_URL: "mysql://app:hunter2@db.internal/identity" });
    expect(mysql.status, mysql.stderr).toBe(2);
    expect(mysql.stderr).toContain(
      "database.url: got mysql:, which is not supported: use file:PATH (SQLite) or postgresql://user@host:5432/database",
    );
    expect(mysql.stderr).not.toContain("hunter2");
    const path = runInEmptyDir(["--dev"], { DATABASE_URL: "/var/lib/identity/identity.db" });
    expect(path.status, path.stderr).toBe(2);
    expect(path.stderr).toContain(
      'database.url: "/var/lib/identity/identity.db" is a path, not a URL: write file:/var/lib/identity/identity.db for SQLite',
    );
    expect(path.stderr).not.toContain("identity.db:)");
    // migrate and the admin tool validate the same way.
    expect(runInEmptyDir(["migrate"], { DATABASE_URL: "mysql://db/identity" }).status).toBe(2);
    expect(runInEmptyDir(["admin", "users", "list"], { DATABASE_URL: "mysql://db/identity" }).status).toBe(2);
  });

  it("file: into a directory that does not exist: exit 3 naming it, and no directory or empty database created", () => {
    for (const args of [["--dev"], ["migrate"]]) {
      const run = runInEmptyDir(args, { DATABASE_URL: "file:./no/such/dir/identity.db" });
      const line = expectOneLine(run, 3);
      expect(line).toMatch(
        /^DatabaseError: DATABASE_URL \(database\.url\) file:\.\/no\/such\/dir\/identity\.db: the directory \/\S+\/no\/such\/dir does not exist; create it/,
      );
      expect(run.created).toEqual([]);
      expect(existsSync(join(run.cwd, "no"))).toBe(false);
    }
  });

  it("PostgreSQL not listening (a closed port on loopback): exit 3, host and port named, the password never printed", async () => {
    const port = await freePort();
    const url = `postgresql://identity:hunter2@127.0.0.1:${port}/identity`;
    for (const args of [["--dev"], ["migrate"]]) {
      const line = expectOneLine(runInEmptyDir(args, { DATABASE_URL: url }), 3);
      expect(line).toBe(
        `DatabaseError: DATABASE_URL (database.url) postgresql://identity:***@127.0.0.1:${port}/identity: connection refused at 127.0.0.1:${port}; ` +
          "check that PostgreSQL is running and listens on that host and port\n",
      );
    }
  });

  it('the admin tool names the database it cannot reach (not "the service is temporarily unavailable"), exit 1', async () => {
    const port = await freePort();
    const run = runInEmptyDir(["admin", "users", "list"], {
      DATABASE_URL: `postgresql://identity@127.0.0.1:${port}/identity`,
    });
    expect(run.status, run.stderr).toBe(1);
    expect(run.stderr).toBe(
      `error: DATABASE_URL (database.url) postgresql://identity@127.0.0.1:${port}/identity: connection refused at 127.0.0.1:${port}; ` +
        "check that PostgreSQL is running and listens on that host and port\n",
    );
  });

  const pgUrl = process.env["TEST_DATABASE_URL"];
  describe.runIf(pgUrl !== undefined && pgUrl !== "")("on the test PostgreSQL server", () => {
    const withPath = (change: (u: URL) => void) => {
      const u = new URL(pgUrl!);
      change(u);
      return u.toString();
    };

    it("a database that does not exist: exit 3, named, with the way to create it", () => {
      const url = withPath((u) => (u.pathname = "/no_such_database"));
      const line = expectOneLine(runInEmptyDir(["--dev"], { DATABASE_URL: url }), 3);
      expect(line).toContain(
        `DatabaseError: DATABASE_URL (database.url) ${url}: the database "no_such_database" does not exist on `,
      );
      expect(line).toContain("create it (createdb no_such_database) or correct the database name");
    });

    it("a role that does not exist: exit 3, the server's reason and what to check", () => {
      const url = withPath((u) => (u.username = "no_such_role"));
      const line = expectOneLine(runInEmptyDir(["migrate"], { DATABASE_URL: url }), 3);
      expect(line).toContain(
        `refused the connection as "no_such_role": role "no_such_role" does not exist; check the user name (and pg_hba.conf)`,
      );
    });
  });
});
