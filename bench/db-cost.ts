/**
 * What each operation costs the database, measured around a phase of `npm run bench`:
 *
 * - PostgreSQL: its processes' CPU (the postmaster and every child: backends, WAL writer,
 *   checkpointer..., from /proc like the server's), the WAL it wrote (`pg_current_wal_lsn()`
 *   before and after: the whole cluster's, so the bench's server should be the bench's alone),
 *   and per statement from `pg_stat_statements` (calls, execution and planning time, rows, WAL
 *   bytes), which needs `shared_preload_libraries = 'pg_stat_statements'` (and
 *   `pg_stat_statements.track_planning = on` for planning time): `.ci/postgres.sh` starts its
 *   cluster so; elsewhere the statement rows are left out and the report says why.
 * - SQLite: WAL frames written (`sampleSqliteWal`, from the WAL index), and on both databases the
 *   bytes the processes caused to be written to storage (`/proc/<pid>/io` write_bytes: a page
 *   counts when it turns dirty in the page cache; on SQLite WAL frames and checkpoint copies).
 */
import { closeSync, openSync, readSync } from "node:fs";
import pg from "pg";
import { safeRead, treeTicks, treeWriteBytes } from "./proc.ts";

/** Database cost per operation of one phase (null: not measured on this database). */
export interface DbCost {
  /** PostgreSQL processes' CPU (user + system) per operation, ms. */
  db_cpu_ms_per_op: number | null;
  /** WAL bytes per operation (PostgreSQL: pg_current_wal_lsn difference; SQLite: frames × (page + 24), a lower bound). */
  wal_bytes_per_op: number | null;
  /** Bytes written to storage per operation by the server's processes (SQLite: WAL + checkpoints) or PostgreSQL's. */
  disk_write_bytes_per_op: number | null;
  /** pg_stat_statements of the phase, most expensive first. */
  statements?: StatementCost[];
}

export interface StatementCost {
  query: string;
  calls_per_op: number;
  /** Mean execution time per call, ms. */
  exec_ms: number;
  /** Mean planning time per call, ms (0 when prepared statements reuse their plan). */
  plan_ms: number;
  rows_per_call: number;
  wal_bytes_per_call: number;
}

export interface PgSnapshot {
  ticks: number;
  lsn: string;
}

export interface PgObserver {
  /** Why statement rows are missing, or null when pg_stat_statements answers. */
  statementsUnavailable: string | null;
  /** The server's settings that change WAL volume (a throwaway test cluster turns full-page writes off). */
  walSettings: string;
  snapshot(): Promise<PgSnapshot>;
  /** CPU ms, WAL bytes between two snapshots. */
  between(a: PgSnapshot, b: PgSnapshot): Promise<{ cpuMs: number; walBytes: number }>;
  resetStatements(): Promise<void>;
  statements(database: string, ops: number): Promise<StatementCost[] | undefined>;
  /** Bytes PostgreSQL's processes caused to be written to storage so far (NaN: not visible here). */
  writeBytes(): number;
  /** pg_database_size of one database, bytes. */
  databaseSize(database: string): Promise<number>;
  close(): Promise<void>;
}

export async function observePostgres(adminUrl: string, clkTck: number): Promise<PgObserver> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  // The postmaster is our backend's parent; every PostgreSQL process is its child.
  const { rows } = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
  // (A server on another machine has no /proc entry here: its CPU is not measured.)
  const stat = safeRead(`/proc/${rows[0]!.pid}/stat`);
  const postmaster = stat === "" ? undefined : Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  let statementsUnavailable: string | null = null;
  try {
    await client.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    await client.query("SELECT 1 FROM pg_stat_statements LIMIT 1");
    const planning = await client.query<{ setting: string }>(
      "SELECT setting FROM pg_settings WHERE name = 'pg_stat_statements.track_planning'",
    );
    if (planning.rows[0]?.setting !== "on")
      statementsUnavailable = "pg_stat_statements.track_planning is off: planning times read 0";
  } catch (e) {
    statementsUnavailable = `pg_stat_statements unavailable (${(e as Error).message}); start PostgreSQL with shared_preload_libraries = 'pg_stat_statements' (.ci/postgres.sh does)`;
  }
  const settings = await client.query<{ name: string; setting: string }>(
    "SELECT name, setting FROM pg_settings WHERE name IN ('full_page_writes', 'fsync', 'synchronous_commit', 'wal_level', 'wal_compression') ORDER BY name",
  );
  const walSettings = settings.rows.map((r) => `${r.name}=${r.setting}`).join(", ");
  const hasStatements =
    statementsUnavailable === null || statementsUnavailable.startsWith("pg_stat_statements.track_planning");
  return {
    statementsUnavailable,
    walSettings,
    async snapshot() {
      const lsn = (await client.query<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn")).rows[0]!.lsn;
      return { ticks: postmaster === undefined ? Number.NaN : treeTicks(postmaster), lsn };
    },
    /** cpuMs is NaN when the server's processes are not visible here. */
    async between(a, b) {
      const wal = await client.query<{ bytes: string }>(
        "SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::bigint::text AS bytes",
        [b.lsn, a.lsn],
      );
      return { cpuMs: ((b.ticks - a.ticks) / clkTck) * 1000, walBytes: Number(wal.rows[0]!.bytes) };
    },
    async resetStatements() {
      if (hasStatements) await client.query("SELECT pg_stat_statements_reset()");
    },
    async statements(database, ops) {
      if (!hasStatements || ops === 0) return undefined;
      const r = await client.query<{
        query: string;
        calls: string;
        exec: number;
        plan: number;
        rows: string;
        wal: string;
      }>(
        `SELECT query, calls::text, total_exec_time AS exec, total_plan_time AS plan, rows::text, wal_bytes::text AS wal
           FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)
          ORDER BY total_exec_time + total_plan_time DESC LIMIT 15`,
        [database],
      );
      return r.rows.map((row) => {
        const calls = Number(row.calls);
        return {
          query: row.query.replace(/\s+/g, " ").slice(0, 160),
          calls_per_op: +(calls / ops).toFixed(3),
          exec_ms: +(row.exec / calls).toFixed(4),
          plan_ms: +(row.plan / calls).toFixed(4),
          rows_per_call: +(Number(row.rows) / calls).toFixed(2),
          wal_bytes_per_call: Math.round(Number(row.wal) / calls),
        };
      });
    },
    writeBytes: () => (postmaster === undefined ? Number.NaN : treeWriteBytes(postmaster)),
    async databaseSize(database) {
      return Number(
        (await client.query<{ size: string }>("SELECT pg_database_size($1)::text AS size", [database])).rows[0]!.size,
      );
    },
    close: () => client.end(),
  };
}

/**
 * SQLite's WAL frames written while it runs, read from the WAL index (`<db>-shm`): its header's
 * `mxFrame` (frames in the WAL) sampled every `intervalMs`; when the WAL restarts from the top
 * (after a checkpoint; its salt changes) the count goes on from the new generation's frames.
 * Frames written in the few ms between the last sample and a restart are missed: a lower bound.
 * Bytes = frames × (page size + 24).
 */
export function sampleSqliteWal(dbFile: string, intervalMs = 5): { stop(): { frames: number; bytes: number } } {
  const shm = `${dbFile}-shm`;
  const header = Buffer.alloc(48);
  const read = (): { mxFrame: number; salt: number; pageSize: number } | undefined => {
    let fd: number | undefined;
    try {
      fd = openSync(shm, "r");
      if (readSync(fd, header, 0, 48, 0) < 48) return undefined;
      const sz = header.readUInt16LE(14);
      return { mxFrame: header.readUInt32LE(16), salt: header.readUInt32LE(32), pageSize: sz === 1 ? 65536 : sz };
    } catch {
      return undefined;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  };
  let last = read();
  let frames = 0;
  let pageSize = last?.pageSize ?? 4096;
  const sample = () => {
    const now = read();
    if (now === undefined) return;
    pageSize = now.pageSize || pageSize;
    if (last !== undefined && now.salt === last.salt) frames += Math.max(0, now.mxFrame - last.mxFrame);
    else frames += now.mxFrame;
    last = now;
  };
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { frames, bytes: frames * (pageSize + 24) };
    },
  };
}
