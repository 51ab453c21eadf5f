import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import pg from "pg";
import type { SuiteOptions } from "vitest";
import { IN_CI, needs } from "./skips.ts";

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

export interface TestDatabaseKind {
  dialect: "sqlite" | "postgresql";
  /** Options for a suite on this database: `describe(name, kind.suiteOptions, …)` skips it where the database is missing (see skips.ts). */
  suiteOptions: SuiteOptions;
  create(): Promise<TestDatabase>;
}

const sqlite: TestDatabaseKind = {
  dialect: "sqlite",
  suiteOptions: {},
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
    suiteOptions: {},
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

/** PostgreSQL where TEST_DATABASE_URL is unset: its suites skip, and in CI they fail. */
const missingPostgres: TestDatabaseKind = {
  dialect: "postgresql",
  suiteOptions: needs("PostgreSQL", 'TEST_DATABASE_URL is unset; eval "$(bash .ci/postgres.sh start)" first'),
  async create() {
    throw new Error(
      `no PostgreSQL: TEST_DATABASE_URL is unset${IN_CI ? " (CI, so this fails instead of skipping)" : ""}. ` +
        'Start one with `eval "$(bash .ci/postgres.sh start)"` (.ci/run does).',
    );
  },
};

/**
 * Every database the contract suites run against: SQLite, and PostgreSQL at TEST_DATABASE_URL.
 * Without TEST_DATABASE_URL the PostgreSQL suites are still registered, and skipped (or, in CI,
 * failed) through `suiteOptions`.
 */
export function testDatabaseKinds(): TestDatabaseKind[] {
  return [sqlite, postgresKind()];
}

export function postgresKind(): TestDatabaseKind {
  const url = process.env["TEST_DATABASE_URL"];
  return url === undefined || url === "" ? missingPostgres : postgres(url);
}

export const sqliteKind = sqlite;
