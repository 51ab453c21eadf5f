import { accessSync, closeSync, constants as fsConstants, existsSync, mkdirSync, openSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { Worker } from "node:worker_threads";
import type BetterSqlite3 from "better-sqlite3";
import type pg from "pg";
import type { PrismaClient } from "../../gen/prisma/sqlite/client.ts";
import { beginImmediate } from "./sqlite-begin-immediate.ts";
import { createWalGate, noteWrite, requestHold, type WalGate } from "./sqlite-wal-gate.ts";

/** The Prisma client type the stores are written against (both dialects share the model). */
export type Db = PrismaClient;

export type Dialect = "sqlite" | "postgresql";

export interface DatabaseOptions {
  url: string;
  poolSize: number;
  connectTimeoutMs: number;
  statementTimeoutMs: number;
  /** Called for every SQL statement run, through Prisma or the driver (benchmarks and tests count them). */
  onQuery?: ((sql: string) => void) | undefined;
  /** Called for every message exchange with a PostgreSQL server (a query, BEGIN, COMMIT...). */
  onRoundTrip?: (() => void) | undefined;
  /**
   * Called when an idle pooled PostgreSQL connection dies (a restart, a failover, an admin
   * terminating it): the pool drops it and opens another when needed; without a listener the
   * error would end the process.
   */
  onIdleConnectionError?: ((error: unknown) => void) | undefined;
  /** Called with each Prisma Client statement's duration (metrics; the hot path's driver statements are timed by their caller). */
  onPrismaQuery?: ((sql: string, seconds: number) => void) | undefined;
  /**
   * SQLite: the WAL's bound (default 64 MiB). Past half of it the checkpointer makes the WAL start
   * again from its top (sqlite-checkpointer.ts); past three quarters the hot path's writes wait
   * for that; a restarted WAL file is truncated to a quarter.
   */
  sqliteWalMaxBytes?: number | undefined;
}

/** SQLite's WAL bound when none is configured. */
export const DEFAULT_SQLITE_WAL_MAX_BYTES = 64 * 1024 * 1024;

/**
 * The driver connection under the Prisma adapter, for the hot path's prepared statements
 * (store/hot/): SQLite's one better-sqlite3 connection itself, or the very pg pool Prisma uses.
 */
export type Driver =
  | {
      dialect: "sqlite";
      db: BetterSqlite3.Database;
      walGate: WalGate;
      /** The hot path calls it before each write transaction: counts it for the checkpointer, and the hard stop. */
      beforeWrite: () => void;
    }
  | { dialect: "postgresql"; pool: pg.Pool };

export interface Database {
  dialect: Dialect;
  client: Db;
  driver: Driver;
  /** Statement timeout, for the hot path's own waits. */
  statementTimeoutMs: number;
  onQuery: ((sql: string) => void) | undefined;
  /** A cheap round trip, for readiness. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export function dialectOf(url: string): Dialect {
  if (/^postgres(ql)?:\/\//.test(url)) return "postgresql";
  if (url.startsWith("file:")) return "sqlite";
  // The configuration refuses other schemes first (config/schema-server.ts), with the reason.
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1];
  throw new Error(
    `a database URL must start with file: or postgresql:// (${scheme === undefined ? "it has no scheme" : `not ${scheme}:`})`,
  );
}

/** The database cannot be used at start: one line saying which setting, what failed and what to check. */
export class DatabaseOpenError extends Error {
  override readonly name = "DatabaseError";
}

/** A database URL as it may be printed: the password, if any, replaced. */
export function printableUrl(url: string): string {
  if (!/^postgres(ql)?:\/\//.test(url)) return url;
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "***";
    return parsed.toString();
  } catch {
    return `${url.split(":")[0]}://…`;
  }
}

/**
 * Reaches the database once before anything uses it, so a server that is down, a missing
 * database or role, or a SQLite file in a directory that does not exist stops the start with a
 * DatabaseOpenError (`setting` names where the URL came from, e.g. "DATABASE_URL
 * (database.url)"), not a driver's stack trace from the first query. SQLite's directory is
 * created only when `createDirectory` (the default file in the data directory): a `file:` URL
 * naming a directory that does not exist is a mistake, not a new empty database. PostgreSQL:
 * one connection, opened and closed.
 */
export async function reachDatabase(
  url: string,
  options: { setting: string; connectTimeoutMs: number; createDirectory: boolean },
): Promise<void> {
  const fail = (what: string, check: string) =>
    new DatabaseOpenError(`${options.setting} ${printableUrl(url)}: ${what}; ${check}`);
  if (dialectOf(url) === "sqlite") {
    const path = sqlitePath(url);
    const dir = dirname(path);
    if (!existsSync(dir)) {
      if (options.createDirectory) return;
      throw fail(
        `the directory ${dir} does not exist`,
        "create it, or correct the path (a relative file: path is relative to the working directory)",
      );
    }
    if (!statSync(dir).isDirectory()) throw fail(`${dir} is not a directory`, "correct the path");
    if (existsSync(path) && statSync(path).isDirectory())
      throw fail(`${path} is a directory`, "name the database file inside it, e.g. file:" + `${path}/identity.db`);
    try {
      accessSync(existsSync(path) ? path : dir, fsConstants.R_OK | fsConstants.W_OK);
    } catch {
      throw fail(`${existsSync(path) ? path : dir} is not writable by this user`, "check its owner and mode");
    }
    return;
  }
  const { default: pgDriver } = await import("pg");
  const client = new pgDriver.Client({ connectionString: url, connectionTimeoutMillis: options.connectTimeoutMs });
  client.on("error", () => {});
  try {
    await client.connect();
  } catch (e) {
    const { host, port, database, user } = client as unknown as {
      host: string;
      port: number;
      database: string;
      user: string;
    };
    const at = `${host}:${port}`;
    const code = String((e as { code?: unknown }).code ?? "");
    const message = (e as Error).message;
    if (code === "ECONNREFUSED")
      throw fail(`connection refused at ${at}`, "check that PostgreSQL is running and listens on that host and port");
    if (code === "ENOTFOUND" || code === "EAI_AGAIN")
      throw fail(`the host ${host} is not found`, "check the host name");
    if (code === "3D000")
      throw fail(
        `the database "${database}" does not exist on ${at}`,
        `create it (createdb ${database}) or correct the database name`,
      );
    if (code === "28000")
      throw fail(`${at} refused the connection as "${user}": ${message}`, "check the user name (and pg_hba.conf)");
    if (code === "28P01") throw fail(`password authentication failed for "${user}" at ${at}`, "check the password");
    if (/timeout/i.test(message)) {
      throw fail(
        `no answer from ${at} within ${options.connectTimeoutMs} ms`,
        "check the host, the port and any firewall between (database.connect_timeout_ms)",
      );
    }
    throw fail(`cannot connect to ${at}: ${message}`, "check the URL and the server");
  } finally {
    await client.end().catch(() => {});
  }
}

/** The filesystem path of a `file:` URL (relative paths are relative to the working directory). */
export function sqlitePath(url: string): string {
  return resolve(url.slice("file:".length).split("?")[0]!);
}

/**
 * Opens the Prisma client for `url` through the matching driver adapter: better-sqlite3 for
 * `file:` URLs (embedded, nothing to install), node-postgres for `postgresql://`. Each dialect has
 * its own generated client (gen/prisma/<dialect>) from the one schema.
 */
export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  return dialectOf(options.url) === "sqlite" ? await openSqlite(options) : await openPostgresql(options);
}

/** SQLite: the file (the service user's only), the client on one connection, the WAL's pragmas and its checkpointer. */
async function openSqlite(options: DatabaseOptions): Promise<Database> {
  const path = sqlitePath(options.url);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  closeSync(openSync(path, "a", 0o600)); // a new database file is the service user's only
  const { client, connection } = await connectSqlite(path, options);
  const walMaxBytes = options.sqliteWalMaxBytes ?? DEFAULT_SQLITE_WAL_MAX_BYTES;
  setWalPragmas(connection, walMaxBytes);
  const checkpointer = startCheckpointer(path, walMaxBytes);
  const driver: Driver = {
    dialect: "sqlite",
    db: connection,
    walGate: checkpointer.walGate,
    beforeWrite: checkpointer.beforeWrite,
  };
  const database = wrap("sqlite", client, driver, options);
  return {
    ...database,
    async close() {
      await checkpointer.stop();
      await database.close();
    },
  };
}

/**
 * The Prisma client over better-sqlite3, and the one connection the adapter opens: the hot path
 * runs its prepared statements on that same connection (one writer, no lock waits between two
 * connections of ours); its `BEGIN` becomes `BEGIN IMMEDIATE` (beginImmediate).
 */
async function connectSqlite(
  path: string,
  options: DatabaseOptions,
): Promise<{ client: Db; connection: BetterSqlite3.Database }> {
  const [{ PrismaClient }, { PrismaBetterSqlite3 }] = await Promise.all([
    import("../../gen/prisma/sqlite/client.ts"),
    import("@prisma/adapter-better-sqlite3"),
  ]);
  const factory = new PrismaBetterSqlite3({ url: path, timeout: options.statementTimeoutMs });
  let connection: BetterSqlite3.Database | undefined;
  const capturing = Object.assign(Object.create(Object.getPrototypeOf(factory) as object) as typeof factory, factory, {
    provider: factory.provider,
    adapterName: factory.adapterName,
    connect: async () => {
      const adapter = await factory.connect();
      connection = (adapter as unknown as { client: BetterSqlite3.Database }).client;
      beginImmediate(adapter, connection);
      return adapter;
    },
    connectToShadowDb: () => factory.connectToShadowDb(),
  });
  const client = new PrismaClient({
    adapter: capturing,
    ...queryLog(options),
  });
  listenToQueries(client, options);
  await client.$connect();
  if (connection === undefined) throw new Error("the SQLite adapter did not expose its connection");
  return { client, connection };
}

function setWalPragmas(connection: BetterSqlite3.Database, walMaxBytes: number): void {
  // WAL is set by the migrations. NORMAL (better-sqlite3's default for WAL, said here so it
  // stays so): a commit is in the WAL before it returns, so a crash of the process loses
  // nothing acknowledged; the fsync happens at checkpoints, not on every commit.
  connection.pragma("synchronous = NORMAL");
  // Checkpoints happen off the event loop, in a worker thread of their own; the hot path holds
  // its writes for a moment when the checkpointer asks (sqlite-wal-gate.ts), so the WAL restarts.
  connection.pragma("wal_autocheckpoint = 0");
  // The writer truncates a WAL it restarts to this (SQLite keeps the file otherwise, at its largest).
  connection.pragma(`journal_size_limit = ${Math.floor(walMaxBytes / 4)}`);
}

/** The WAL's checkpointer thread (sqlite-checkpointer.ts), its gate, and the hard stop beside it. */
function startCheckpointer(
  path: string,
  walMaxBytes: number,
): { walGate: WalGate; beforeWrite: () => void; stop(): Promise<void> } {
  const walGate = createWalGate();
  const checkpointer = new Worker(new URL("./sqlite-checkpointer.ts", import.meta.url), {
    workerData: { path, intervalMs: 200, walMaxBytes, gate: walGate },
  });
  checkpointer.unref();
  // The hard stop: a checkpoint can stall on fsync for a quarter of a second while writes go
  // on. Should the WAL file pass three quarters of its bound meanwhile, the hot path's writes
  // wait until the checkpointer has restarted it. Looked at before a write transaction (one
  // stat, at most every 10 ms), so a service without writes does not poll.
  const walFile = `${path}-wal`;
  const hardBytes = Math.floor((walMaxBytes * 3) / 4);
  let lookedAt = 0;
  const beforeWrite = () => {
    noteWrite(walGate);
    const now = Date.now();
    if (now - lookedAt < 10) return;
    lookedAt = now;
    try {
      if (statSync(walFile).size >= hardBytes) requestHold(walGate);
    } catch {
      // no WAL file (yet): nothing to bound
    }
  };
  return {
    walGate,
    beforeWrite,
    async stop() {
      // Held (ref) while closing: an unref'd worker alone would let the process end mid-close.
      checkpointer.ref();
      const exited = new Promise<void>((resolve) => checkpointer.once("exit", () => resolve()));
      checkpointer.postMessage("close");
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise<void>((resolve) => (timer = setTimeout(resolve, 2000)))]);
      clearTimeout(timer);
      await checkpointer.terminate();
    },
  };
}

/** PostgreSQL: one pg pool for Prisma and the hot path's named prepared statements. */
async function openPostgresql(options: DatabaseOptions): Promise<Database> {
  const [{ PrismaClient }, { PrismaPg }] = await Promise.all([
    import("../../gen/prisma/postgresql/client.ts"),
    import("@prisma/adapter-pg"),
  ]);
  const pool = await createPool(options);
  const client = new PrismaClient({
    adapter: new PrismaPg(pool),
    ...queryLog(options),
  });
  listenToQueries(client as unknown as Db, options);
  // Same model, same delegates: the PostgreSQL client is used through the shared type.
  const database = wrap("postgresql", client as unknown as Db, { dialect: "postgresql", pool }, options);
  return {
    ...database,
    async close() {
      await database.close();
      await pool.end();
    },
  };
}

async function createPool(options: DatabaseOptions): Promise<pg.Pool> {
  const { default: pgDriver } = await import("pg");
  const pool = new pgDriver.Pool({
    connectionString: options.url,
    max: options.poolSize,
    connectionTimeoutMillis: options.connectTimeoutMs,
    statement_timeout: options.statementTimeoutMs,
    query_timeout: options.statementTimeoutMs + 1000,
    // The service's statements find their rows by an index (the hot path's named statements above
    // all). A named statement keeps the generic plan it made after five runs; made while a table
    // was small (a new database, before autovacuum's next ANALYZE), that plan walked the whole
    // table for each lookup, and went on doing so as the table grew (measured: a new user's read
    // 0.04 → 1.1–1.4 ms of PostgreSQL time with 20,000 users). Off, the planner takes a sequential
    // scan only where no index serves. Set before the connection is handed out.
    // eslint-disable-next-line @typescript-eslint/no-misused-promises -- pg-pool awaits it (a failure ends the connection); its types say void
    onConnect: async (connection: pg.ClientBase) => {
      await connection.query("SET enable_seqscan = off");
    },
  });
  pool.on("error", (e) => options.onIdleConnectionError?.(e));
  if (options.onRoundTrip !== undefined) {
    const onRoundTrip = options.onRoundTrip;
    pool.on("connect", (connection) => {
      const query = connection.query.bind(connection) as (...args: unknown[]) => unknown;
      (connection as unknown as { query: (...args: unknown[]) => unknown }).query = (...args) => {
        onRoundTrip();
        return query(...args);
      };
    });
  }
  return pool;
}

function queryLog(options: DatabaseOptions): { log?: { emit: "event"; level: "query" }[] } {
  return options.onQuery === undefined && options.onPrismaQuery === undefined
    ? {}
    : { log: [{ emit: "event", level: "query" }] };
}

function listenToQueries(client: Db, options: DatabaseOptions): void {
  const { onQuery, onPrismaQuery } = options;
  if (onQuery === undefined && onPrismaQuery === undefined) return;
  (client as unknown as { $on(e: "query", cb: (ev: { query: string; duration: number }) => void): void }).$on(
    "query",
    (ev) => {
      onQuery?.(ev.query);
      onPrismaQuery?.(ev.query, ev.duration / 1000);
    },
  );
}

function wrap(dialect: Dialect, client: Db, driver: Driver, options: DatabaseOptions): Database {
  return {
    dialect,
    client,
    driver,
    statementTimeoutMs: options.statementTimeoutMs,
    onQuery: options.onQuery,
    async ping() {
      await client.$queryRawUnsafe("SELECT 1");
    },
    close: () => client.$disconnect(),
  };
}
