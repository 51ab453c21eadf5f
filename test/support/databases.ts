import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import pg from "pg";

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

export interface TestDatabaseKind {
  dialect: "sqlite" | "postgresql";
  create(): Promise<TestDatabase>;
}

const sqlite: TestDatabaseKind = {
  dialect: "sqlite",
  async create() {
    const dir = mkdtempSync(join(tmpdir(), "identity-test-"));
    return { url: `file:${join(dir, "test.db")}`, drop: async () => rmSync(dir, { recursive: true, force: true }) };
  },
};

/**
 * A fresh PostgreSQL database per call on the server at TEST_DATABASE_URL (which `.ci/run`
 * starts). Dropped afterwards.
 */
function postgres(adminUrl: string): TestDatabaseKind {
  return {
    dialect: "postgresql",
    async create() {
      const name = `t_${randomBytes(6).toString("hex")}`;
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${name}`);
      await admin.end();
      const url = new URL(adminUrl);
      url.pathname = `/${name}`;
      return {
        url: url.toString(),
        async drop() {
          const c = new pg.Client({ connectionString: adminUrl });
          await c.connect();
          await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
          await c.end();
        },
      };
    },
  };
}

/**
 * Every database the contract suites run against: SQLite always, PostgreSQL when
 * TEST_DATABASE_URL is set. In CI its absence is an error, never a silent skip.
 */
export function testDatabaseKinds(): TestDatabaseKind[] {
  const url = process.env["TEST_DATABASE_URL"];
  if (url === undefined || url === "") {
    if (process.env["CI"] === "true") throw new Error("CI must set TEST_DATABASE_URL (see .ci/run)");
    return [sqlite];
  }
  return [sqlite, postgres(url)];
}

export function postgresKind(): TestDatabaseKind | null {
  return testDatabaseKinds().find((k) => k.dialect === "postgresql") ?? null;
}

export const sqliteKind = sqlite;
