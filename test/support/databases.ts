import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, type SuiteOptions } from "vitest";
import { type Database, openDatabase } from "../../src/store/database.ts";
import { migrate } from "../../src/store/migrate.ts";
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

/** How a test opens its database; connections time out after 5 s. */
export interface MigratedDatabaseOptions {
  /** Default 5. */
  poolSize?: number;
  /** Default 5000. */
  statementTimeoutMs?: number;
}

export interface MigratedDatabase {
  url: string;
  db: Database;
  /** Closes the connections, then drops the database. */
  close(): Promise<void>;
}

/** A fresh database of `kind`, migrated and opened the service's way (`openDatabase`). */
export async function openMigratedDatabase(
  kind: TestDatabaseKind,
  { poolSize = 5, statementTimeoutMs = 5000 }: MigratedDatabaseOptions = {},
): Promise<MigratedDatabase> {
  const td = await kind.create();
  try {
    await migrate(td.url);
    const db = await openDatabase({ url: td.url, poolSize, connectTimeoutMs: 5000, statementTimeoutMs });
    return {
      url: td.url,
      db,
      async close() {
        await db.close();
        await td.drop();
      },
    };
  } catch (e) {
    await td.drop();
    throw e;
  }
}

/**
 * A contract suite's database: called inside the suite's `describe`, it opens a fresh migrated
 * database of `kind` before the suite's tests (and before the hooks registered after this call,
 * which may build stores on it) and drops it after them. The returned function gives the open database.
 */
export function useMigratedDatabase(kind: TestDatabaseKind, options: MigratedDatabaseOptions = {}): () => Database {
  let opened: MigratedDatabase | undefined;
  beforeAll(async () => {
    opened = await openMigratedDatabase(kind, options);
  });
  afterAll(async () => {
    await opened?.close();
  });
  return () => {
    if (opened === undefined) throw new Error("the suite's database is open only in its tests and in later hooks");
    return opened.db;
  };
}
