import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadMigrations, migrate, MigrationError } from "../../src/store/migrate.ts";
import { prismaDiff } from "../../tools/prisma-diff/prisma-diff.ts";
import { type TestDatabase, testDatabaseKinds } from "../support/databases.ts";
import { describeSchema, execSql, queryRows } from "../support/schema-introspection.ts";

const dropLater: TestDatabase[] = [];
afterAll(async () => {
  for (const d of dropLater) await d.drop();
});

describe("migrations", () => {
  it(
    "tools/prisma-diff, installed by npm ci, writes the SQL for a change to the model",
    { timeout: 120_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "prisma-diff-test-"));
      try {
        const changed = join(dir, "schema.prisma");
        writeFileSync(changed, `${readFileSync("prisma/schema.prisma", "utf8")}\nmodel Probe {\n  id String @id\n}\n`);
        const sql = await prismaDiff({ dialect: "sqlite", from: "prisma/schema.prisma", to: changed });
        expect(sql).toBe('-- CreateTable\nCREATE TABLE "Probe" (\n    "id" TEXT NOT NULL PRIMARY KEY\n);\n');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  for (const kind of testDatabaseKinds()) {
    describe(kind.dialect, kind.suiteOptions, () => {
      it(
        "applied in order to an empty database, give exactly the schema that prisma/schema.prisma describes",
        { timeout: 600_000 },
        async () => {
          const migrated = await kind.create();
          const expected = await kind.create();
          const scratch = kind.dialect === "postgresql" ? await kind.create() : undefined;
          dropLater.push(migrated, expected, ...(scratch === undefined ? [] : [scratch]));
          const report = await migrate(migrated.url);
          expect(report.applied).toEqual(loadMigrations(kind.dialect).map((m) => m.name));
          const sql = await prismaDiff({
            dialect: kind.dialect,
            to: "prisma/schema.prisma",
            ...(scratch === undefined ? {} : { postgresUrl: scratch.url }),
          });
          await execSql(expected.url, sql);
          const [actual, wanted] = await Promise.all([describeSchema(migrated.url), describeSchema(expected.url)]);
          expect(actual.length).toBeGreaterThan(20);
          expect(actual).toEqual(wanted);
        },
      );

      it("run once: a second run applies nothing", async () => {
        const db = await kind.create();
        dropLater.push(db);
        await migrate(db.url);
        const again = await migrate(db.url);
        expect(again.applied).toEqual([]);
        expect(again.alreadyApplied).toBe(loadMigrations(kind.dialect).length);
      });

      it("keep existing rows when later migrations rebuild tables", async () => {
        const db = await kind.create();
        dropLater.push(db);
        const all = loadMigrations(kind.dialect);
        await migrate(db.url, all.slice(0, 1));
        await execSql(
          db.url,
          `INSERT INTO users (id, username, updated_at) VALUES ('usr_keep', 'keep', CURRENT_TIMESTAMP);
           INSERT INTO identities (id, user_id, issuer, subject, provider) VALUES ('idn_keep', 'usr_keep', 'https://op', 's', 'op');`,
        );
        await migrate(db.url, all);
        const rows = await describeRows(db.url);
        expect(rows).toEqual({ users: 1, identities: 1 });
      });

      it("an upgraded audit trail keeps the address key on failures counted against an address only", async () => {
        const db = await kind.create();
        dropLater.push(db);
        const all = loadMigrations(kind.dialect);
        const at = all.findIndex((m) => m.name === "0016_audit_counted_address_key");
        expect(at).toBeGreaterThan(0);
        await migrate(db.url, all.slice(0, at));
        // Before 0016 every row carried its client's address key.
        const rows: [id: string, type: string, code: string | null][] = [
          ["evt_success", "signin.succeeded", null],
          ["evt_bad_token", "signin.failed", "id_token_expired"],
          ["evt_outage", "signin.failed", "provider_unavailable"],
          ["evt_internal", "signin.failed", "internal"],
          ["evt_mfa_wrong", "mfa.verify_failed", null],
          ["evt_exhausted", "mfa.challenge_exhausted", "mfa_challenge_exhausted"],
          ["evt_code_failed", "mfa.code_failed", "mfa_code_invalid"],
          ["evt_admin", "admin.user_locked", null],
        ];
        const values = rows
          .map(
            ([id, type, code]) =>
              `('${id}', CURRENT_TIMESTAMP, '${type}', ${code === null ? "NULL" : `'${code}'`}, '192.0.2.7', '192.0.2.7')`,
          )
          .join(", ");
        await execSql(db.url, `INSERT INTO audit_events (id, at, type, code, ip, address_key) VALUES ${values}`);
        await migrate(db.url, all);
        const after = await queryRows(db.url, "SELECT id, ip, address_key FROM audit_events ORDER BY id");
        const keyed = after.filter((r) => r["address_key"] !== null).map((r) => r["id"]);
        expect(keyed.sort()).toEqual(["evt_bad_token", "evt_exhausted", "evt_mfa_wrong"]);
        expect(after.map((r) => r["ip"])).toEqual(rows.map(() => "192.0.2.7"));
      });

      it("an upgraded audit trail carries the counted user on the failures per-user counts read only", async () => {
        const db = await kind.create();
        dropLater.push(db);
        const all = loadMigrations(kind.dialect);
        const at = all.findIndex((m) => m.name === "0017_audit_counted_user_id");
        expect(at).toBeGreaterThan(0);
        await migrate(db.url, all.slice(0, at));
        const rows: [id: string, type: string, userId: string | null][] = [
          ["evt_success", "signin.succeeded", "usr_a"],
          ["evt_failed", "signin.failed", "usr_a"],
          ["evt_failed_anonymous", "signin.failed", null],
          ["evt_mfa_wrong", "mfa.verify_failed", "usr_a"],
          ["evt_exhausted", "mfa.challenge_exhausted", "usr_b"],
          ["evt_code_failed", "mfa.code_failed", "usr_a"],
          ["evt_password_wrong", "password.change_failed", "usr_b"],
          ["evt_step_up", "mfa.step_up", "usr_a"],
          ["evt_admin", "admin.user_locked", "usr_b"],
        ];
        const values = rows
          .map(([id, type, user]) => `('${id}', CURRENT_TIMESTAMP, '${type}', ${user === null ? "NULL" : `'${user}'`})`)
          .join(", ");
        await execSql(db.url, `INSERT INTO audit_events (id, at, type, user_id) VALUES ${values}`);
        await migrate(db.url, all);
        const after = await queryRows(db.url, "SELECT id, user_id, counted_user_id FROM audit_events ORDER BY id");
        const counted = Object.fromEntries(
          after.filter((r) => r["counted_user_id"] !== null).map((r) => [r["id"], r["counted_user_id"]]),
        );
        expect(counted).toEqual({
          evt_code_failed: "usr_a",
          evt_exhausted: "usr_b",
          evt_failed: "usr_a",
          evt_mfa_wrong: "usr_a",
          evt_password_wrong: "usr_b",
        });
        expect(after.map((r) => r["user_id"])).toEqual(
          [...rows].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map((r) => r[2]),
        );
      });

      it("a failing migration rolls back, names itself, and leaves the database as it was", async () => {
        const db = await kind.create();
        dropLater.push(db);
        const all = loadMigrations(kind.dialect);
        await migrate(db.url, all);
        const before = await describeSchema(db.url);
        const broken = {
          name: "9999_broken",
          sql: `CREATE TABLE "half_done" ("id" TEXT);\nSELECT * FROM "no_such_table";`,
          checksum: "x",
        };
        const error = await migrate(db.url, [...all, broken]).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(MigrationError);
        expect((error as Error).message).toContain("9999_broken");
        expect(await describeSchema(db.url)).toEqual(before);
        expect((await migrate(db.url, all)).applied).toEqual([]);
      });

      it("refuse a migration that was edited after it was applied", async () => {
        const db = await kind.create();
        dropLater.push(db);
        const all = loadMigrations(kind.dialect);
        await migrate(db.url, all);
        const edited = all.map((m, i) => (i === 0 ? { ...m, checksum: "edited" } : m));
        await expect(migrate(db.url, edited)).rejects.toThrow(/changed after it was applied/);
      });

      it("two processes migrating the same empty database at once apply each migration once", async () => {
        const db = await kind.create();
        dropLater.push(db);
        const script = `import { migrate } from "./src/store/migrate.ts"; const r = await migrate(process.argv[1]); console.log(JSON.stringify(r));`;
        const runOne = () =>
          new Promise<{ applied: string[] }>((resolvePromise, reject) => {
            const child = spawn(process.execPath, ["--input-type=module", "-e", script, db.url], {
              stdio: ["ignore", "pipe", "pipe"],
            });
            let out = "";
            let err = "";
            child.stdout.on("data", (d: Buffer) => (out += d.toString()));
            child.stderr.on("data", (d: Buffer) => (err += d.toString()));
            child.on("close", (code) =>
              code === 0 ? resolvePromise(JSON.parse(out) as { applied: string[] }) : reject(new Error(err)),
            );
          });
        const [a, b] = await Promise.all([runOne(), runOne()]);
        const names = loadMigrations(kind.dialect).map((m) => m.name);
        expect([...a.applied, ...b.applied].sort()).toEqual(names);
        expect((await migrate(db.url)).applied).toEqual([]);
      });
    });
  }
});

async function describeRows(url: string): Promise<{ users: number; identities: number }> {
  if (url.startsWith("file:")) {
    const { default: Sqlite } = await import("better-sqlite3");
    const { sqlitePath } = await import("../../src/store/database.ts");
    const db = new Sqlite(sqlitePath(url), { readonly: true });
    try {
      const users = (db.prepare("SELECT count(*) AS n FROM users").get() as { n: number }).n;
      const identities = (db.prepare("SELECT count(*) AS n FROM identities").get() as { n: number }).n;
      return { users, identities };
    } finally {
      db.close();
    }
  }
  const { default: pg } = await import("pg");
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const users = Number((await c.query("SELECT count(*) AS n FROM users")).rows[0].n);
    const identities = Number((await c.query("SELECT count(*) AS n FROM identities")).rows[0].n);
    return { users, identities };
  } finally {
    await c.end();
  }
}
