import { closeSync, mkdirSync, openSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { Worker } from "node:worker_threads";
import type BetterSqlite3 from "better-sqlite3";
import type pg from "pg";
import type { PrismaClient } from "../../gen/prisma/sqlite/client.ts";
import { createWalGate, requestHold, type WalGate } from "./sqlite-wal-gate.ts";

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
  | { dialect: "sqlite"; db: BetterSqlite3.Database; walGate: WalGate }
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
  throw new Error(`database.url must start with file: or postgresql:// (got ${url.split(":")[0]}:)`);
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
  const dialect = dialectOf(options.url);
  if (dialect === "sqlite") {
    const path = sqlitePath(options.url);
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    closeSync(openSync(path, "a", 0o600)); // a new database file is the service user's only
    const [{ PrismaClient }, { PrismaBetterSqlite3 }] = await Promise.all([
      import("../../gen/prisma/sqlite/client.ts"),
      import("@prisma/adapter-better-sqlite3"),
    ]);
    // The adapter opens one better-sqlite3 connection; the hot path runs its prepared statements
    // on that same connection (one writer, no lock waits between two connections of ours).
    const factory = new PrismaBetterSqlite3({ url: path, timeout: options.statementTimeoutMs });
    let connection: BetterSqlite3.Database | undefined;
    const capturing = Object.assign(Object.create(Object.getPrototypeOf(factory) as object) as typeof factory, factory, {
      provider: factory.provider,
      adapterName: factory.adapterName,
      connect: async () => {
        const adapter = await factory.connect();
        connection = (adapter as unknown as { client: BetterSqlite3.Database }).client;
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
    // WAL is set by the migrations. NORMAL (better-sqlite3's default for WAL, said here so it
    // stays so): a commit is in the WAL before it returns, so a crash of the process loses
    // nothing acknowledged; the fsync happens at checkpoints, not on every commit.
    connection.pragma("synchronous = NORMAL");
    // Checkpoints happen off the event loop, in a worker thread of their own; the hot path holds
    // its writes for a moment when the checkpointer asks (sqlite-wal-gate.ts), so the WAL restarts.
    connection.pragma("wal_autocheckpoint = 0");
    const walMaxBytes = options.sqliteWalMaxBytes ?? DEFAULT_SQLITE_WAL_MAX_BYTES;
    // The writer truncates a WAL it restarts to this (SQLite keeps the file otherwise, at its largest).
    connection.pragma(`journal_size_limit = ${Math.floor(walMaxBytes / 4)}`);
    const walGate = createWalGate();
    const checkpointer = new Worker(new URL("./sqlite-checkpointer.ts", import.meta.url), {
      workerData: { path, intervalMs: 200, walMaxBytes, gate: walGate },
    });
    checkpointer.unref();
    // The hard stop: a checkpoint can stall on fsync for a quarter of a second while writes go
    // on. Should the WAL file pass three quarters of its bound meanwhile, the hot path's writes
    // wait until the checkpointer has restarted it (one stat every 10 ms, off the request path).
    const walFile = `${path}-wal`;
    const hardBytes = Math.floor((walMaxBytes * 3) / 4);
    const guard = setInterval(() => {
      try {
        if (statSync(walFile).size >= hardBytes) requestHold(walGate);
      } catch {
        // no WAL file (yet): nothing to bound
      }
    }, 10);
    guard.unref();
    const database = wrap(dialect, client, { dialect, db: connection, walGate }, options);
    return {
      ...database,
      async close() {
        clearInterval(guard);
        // Held (ref) while closing: an unref'd worker alone would let the process end mid-close.
        checkpointer.ref();
        const exited = new Promise<void>((resolve) => checkpointer.once("exit", () => resolve()));
        checkpointer.postMessage("close");
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([exited, new Promise<void>((resolve) => (timer = setTimeout(resolve, 2000)))]);
        clearTimeout(timer);
        await checkpointer.terminate();
        await database.close();
      },
    };
  }
  const [{ PrismaClient }, { PrismaPg }] = await Promise.all([
    import("../../gen/prisma/postgresql/client.ts"),
    import("@prisma/adapter-pg"),
  ]);
  const { default: pgDriver } = await import("pg");
  // One pool for Prisma and the hot path's named prepared statements.
  const pool = new pgDriver.Pool({
    connectionString: options.url,
    max: options.poolSize,
    connectionTimeoutMillis: options.connectTimeoutMs,
    statement_timeout: options.statementTimeoutMs,
    query_timeout: options.statementTimeoutMs + 1000,
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
  const client = new PrismaClient({
    adapter: new PrismaPg(pool),
    ...queryLog(options),
  });
  listenToQueries(client as unknown as Db, options);
  // Same model, same delegates: the PostgreSQL client is used through the shared type.
  const database = wrap(dialect, client as unknown as Db, { dialect, pool }, options);
  return {
    ...database,
    async close() {
      await database.close();
      await pool.end();
    },
  };
}

function queryLog(options: DatabaseOptions): { log?: { emit: "event"; level: "query" }[] } {
  return options.onQuery === undefined && options.onPrismaQuery === undefined ? {} : { log: [{ emit: "event", level: "query" }] };
}

function listenToQueries(client: Db, options: DatabaseOptions): void {
  const { onQuery, onPrismaQuery } = options;
  if (onQuery === undefined && onPrismaQuery === undefined) return;
  (client as unknown as { $on(e: "query", cb: (ev: { query: string; duration: number }) => void): void }).$on("query", (ev) => {
    onQuery?.(ev.query);
    onPrismaQuery?.(ev.query, ev.duration / 1000);
  });
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
