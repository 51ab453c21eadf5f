import { createHash } from "node:crypto";
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { type Dialect, dialectOf, sqlitePath } from "./database.ts";

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrationReport {
  applied: string[];
  alreadyApplied: number;
}

const MIGRATIONS_ROOT = fileURLToPath(new URL("../../prisma/migrations/", import.meta.url));
/** pg_advisory_lock key: replicas starting together migrate once, the others wait. */
const PG_LOCK_KEY = 727_351_902;

export class MigrationError extends Error {
  override readonly name = "MigrationError";
}

/** The migrations for `dialect`, in order (directory names sort: 0001_init, 0002_…). */
export function loadMigrations(dialect: Dialect, root = MIGRATIONS_ROOT): Migration[] {
  const dir = `${root}/${dialect}`;
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort()
    .map((name) => {
      const sql = readFileSync(`${dir}/${name}/migration.sql`, "utf8");
      return { name, sql, checksum: createHash("sha256").update(sql).digest("hex") };
    });
}

/**
 * Applies pending migrations, each in its own transaction, recording them in `_migrations` so
 * each runs once. A failing migration rolls back and stops with a MigrationError naming it; a
 * recorded migration whose file changed since is refused (migrations are append-only).
 */
export async function migrate(url: string, migrations = loadMigrations(dialectOf(url))): Promise<MigrationReport> {
  return dialectOf(url) === "sqlite" ? migrateSqlite(url, migrations) : migratePostgres(url, migrations);
}

function plan(migrations: Migration[], recorded: Map<string, string>): Migration[] {
  for (const [name, checksum] of recorded) {
    const m = migrations.find((x) => x.name === name);
    if (m === undefined) {
      throw new MigrationError(
        `the database has migration ${name}, which this version does not know; is it older than the database?`,
      );
    }
    if (m.checksum !== checksum) {
      throw new MigrationError(`migration ${name} was changed after it was applied; migrations are append-only`);
    }
  }
  return migrations.filter((m) => !recorded.has(m.name));
}

async function migrateSqlite(url: string, migrations: Migration[]): Promise<MigrationReport> {
  const { default: Sqlite } = await import("better-sqlite3");
  const path = sqlitePath(url);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  // E-mail addresses, subjects, addresses and the audit trail: readable by the service's user only.
  // SQLite gives the -wal and -shm files the database file's mode.
  closeSync(openSync(path, "a", 0o600));
  const db = new Sqlite(path, { timeout: 30_000 });
  try {
    // Switching a new database to WAL needs it alone for a moment; a second process starting at
    // the same instant gets SQLITE_BUSY at once (no busy wait for this), so retry briefly.
    retryWhileBusy(() => db.pragma("journal_mode = WAL"), 30_000);
    // SQLite can only change foreign_keys outside a transaction. Prisma's SQLite migrations
    // rebuild tables (create new, copy, DROP old, rename); with enforcement on, the DROP would
    // cascade-delete dependent rows. So: off for the run, then an explicit check before COMMIT.
    db.pragma("foreign_keys = OFF");
    db.exec(
      `CREATE TABLE IF NOT EXISTS "_migrations" ("name" TEXT PRIMARY KEY, "checksum" TEXT NOT NULL, "applied_at" TEXT NOT NULL)`,
    );
    // BEGIN IMMEDIATE takes the write lock: a second process waits here, then sees the work done.
    db.exec("BEGIN IMMEDIATE");
    const applied: string[] = [];
    try {
      const rows = db.prepare(`SELECT "name", "checksum" FROM "_migrations"`).all() as {
        name: string;
        checksum: string;
      }[];
      const pending = plan(migrations, new Map(rows.map((r) => [r.name, r.checksum])));
      for (const m of pending) {
        db.exec(`SAVEPOINT m`);
        try {
          db.exec(m.sql);
          db.prepare(`INSERT INTO "_migrations" ("name", "checksum", "applied_at") VALUES (?, ?, ?)`).run(
            m.name,
            m.checksum,
            new Date().toISOString(),
          );
          db.exec(`RELEASE m`);
        } catch (e) {
          db.exec(`ROLLBACK TO m`);
          throw new MigrationError(`migration ${m.name} failed and was rolled back: ${(e as Error).message}`, {
            cause: e,
          });
        }
        applied.push(m.name);
      }
      const broken = db.pragma("foreign_key_check") as unknown[];
      if (broken.length > 0) {
        throw new MigrationError(`migrations left ${broken.length} foreign-key violations; rolled back`);
      }
      db.exec("COMMIT");
      return { applied, alreadyApplied: rows.length };
    } catch (e) {
      if (db.inTransaction) db.exec("ROLLBACK");
      throw e;
    }
  } finally {
    db.close();
  }
}

function retryWhileBusy<T>(operation: () => T, timeoutMs: number): T {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return operation();
    } catch (e) {
      if ((e as { code?: string }).code !== "SQLITE_BUSY" || Date.now() > deadline) throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25);
    }
  }
}

async function migratePostgres(url: string, migrations: Migration[]): Promise<MigrationReport> {
  const { default: pg } = await import("pg");
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [PG_LOCK_KEY]);
    try {
      await client.query(
        `CREATE TABLE IF NOT EXISTS "_migrations" ("name" TEXT PRIMARY KEY, "checksum" TEXT NOT NULL, "applied_at" TIMESTAMPTZ NOT NULL DEFAULT now())`,
      );
      const { rows } = await client.query<{ name: string; checksum: string }>(
        `SELECT "name", "checksum" FROM "_migrations"`,
      );
      const pending = plan(migrations, new Map(rows.map((r) => [r.name, r.checksum])));
      const applied: string[] = [];
      for (const m of pending) {
        await client.query("BEGIN");
        try {
          await client.query(m.sql);
          await client.query(`INSERT INTO "_migrations" ("name", "checksum") VALUES ($1, $2)`, [m.name, m.checksum]);
          await client.query("COMMIT");
        } catch (e) {
          await client.query("ROLLBACK");
          throw new MigrationError(`migration ${m.name} failed and was rolled back: ${(e as Error).message}`, {
            cause: e,
          });
        }
        applied.push(m.name);
      }
      return { applied, alreadyApplied: rows.length };
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [PG_LOCK_KEY]).catch(() => undefined);
    }
  } finally {
    await client.end();
  }
}
