import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { PrismaClient } from "../../gen/prisma/sqlite/client.ts";

/** The Prisma client type the stores are written against (both dialects share the model). */
export type Db = PrismaClient;

export type Dialect = "sqlite" | "postgresql";

export interface DatabaseOptions {
  url: string;
  poolSize: number;
  connectTimeoutMs: number;
  statementTimeoutMs: number;
  /** Called for every SQL statement sent (benchmarks count round trips with it). */
  onQuery?: ((sql: string) => void) | undefined;
}

export interface Database {
  dialect: Dialect;
  client: Db;
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
    mkdirSync(dirname(path), { recursive: true });
    const [{ PrismaClient }, { PrismaBetterSqlite3 }] = await Promise.all([
      import("../../gen/prisma/sqlite/client.ts"),
      import("@prisma/adapter-better-sqlite3"),
    ]);
    const client = new PrismaClient({
      adapter: new PrismaBetterSqlite3({ url: path, timeout: options.statementTimeoutMs }),
      ...(options.onQuery === undefined ? {} : { log: [{ emit: "event", level: "query" }] }),
    });
    if (options.onQuery !== undefined) {
      const onQuery = options.onQuery;
      (client as unknown as { $on(e: "query", cb: (ev: { query: string }) => void): void }).$on("query", (ev) => onQuery(ev.query));
    }
    return wrap(dialect, client);
  }
  const [{ PrismaClient }, { PrismaPg }] = await Promise.all([
    import("../../gen/prisma/postgresql/client.ts"),
    import("@prisma/adapter-pg"),
  ]);
  const adapter = new PrismaPg({
    connectionString: options.url,
    max: options.poolSize,
    connectionTimeoutMillis: options.connectTimeoutMs,
    statement_timeout: options.statementTimeoutMs,
    query_timeout: options.statementTimeoutMs + 1000,
  });
  const client = new PrismaClient({
    adapter,
    ...(options.onQuery === undefined ? {} : { log: [{ emit: "event", level: "query" }] }),
  });
  if (options.onQuery !== undefined) {
    const onQuery = options.onQuery;
    (client as unknown as { $on(e: "query", cb: (ev: { query: string }) => void): void }).$on("query", (ev) => onQuery(ev.query));
  }
  // Same model, same delegates: the PostgreSQL client is used through the shared type.
  return wrap(dialect, client as unknown as Db);
}

function wrap(dialect: Dialect, client: Db): Database {
  return {
    dialect,
    client,
    async ping() {
      await client.$queryRawUnsafe("SELECT 1");
    },
    close: () => client.$disconnect(),
  };
}
