/**
 * The counting phase (no load): SQL statements, and database round trips when the app offers a
 * hook for them, per operation of this service.
 *
 *   node bench/count-statements.ts [--db postgresql]     (BENCH_DATABASE_URL: a fresh database)
 *
 * Starts the app in-process (createApp with the `onQuery` hook) with the same production-like
 * config the served process gets (bench/service-config.ts), its own bench issuer, and runs one
 * at a time, over HTTP: a new user's first sign-in, a returning sign-in (same device), a refresh
 * and GET /auth/me. Prints one JSON object on stdout. BENCH_TRACE=1 also lists the statements.
 *
 * Round trips: the app's `onRoundTrip` hook sees every exchange with a PostgreSQL server; on
 * SQLite (in-process, no round trips) it is never called and the counts are null ("n/a").
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createApp } from "../src/app.ts";
import { loadConfig } from "../src/config/load.ts";
import { silentLogger } from "../src/logger.ts";
import { startBenchIssuer } from "./issuer.ts";
import { BENCH_PROVIDER, serviceConfig, writeServiceConfig } from "./service-config.ts";

export interface StatementCounts {
  database: string;
  statements: Record<Operation, number>;
  /** Null when the app gave no round-trip hook calls at all. */
  round_trips: Record<Operation, number> | null;
  trace?: Record<Operation, string[]>;
}

export type Operation = "new_signin" | "returning_signin" | "refresh" | "me";

const { values: args } = parseArgs({ options: { db: { type: "string", default: "sqlite" } } });
const trace = process.env["BENCH_TRACE"] === "1";

const dir = mkdtempSync(join(tmpdir(), "identity-bench-count-"));
const issuer = await startBenchIssuer();
let databaseUrl: string | undefined;
if (args.db === "postgresql") {
  databaseUrl = process.env["BENCH_DATABASE_URL"];
  if (databaseUrl === undefined || databaseUrl === "") throw new Error("--db postgresql needs BENCH_DATABASE_URL");
}
const file = writeServiceConfig(dir, serviceConfig({ issuer: issuer.issuer, dataDir: join(dir, "data"), databaseUrl }));
const config = loadConfig({ file, env: { PORT: "0", HOST: "127.0.0.1" } });

let statements = 0;
let roundTrips = 0;
let roundTripHookCalled = false;
let sqls: string[] = [];
const hooks = {
  onQuery: (sql: string) => {
    statements++;
    if (trace) sqls.push(sql.replace(/\s+/g, " ").slice(0, 200));
  },
  onRoundTrip: () => {
    roundTrips++;
    roundTripHookCalled = true;
  },
};
const app = await createApp(config, silentLogger, hooks);
const server = await app.listen();

const json = { "content-type": "application/json" };
async function call(path: string, init: RequestInit): Promise<Record<string, unknown>> {
  const r = await fetch(`${server.url}${path}`, init);
  const body = (await r.json()) as Record<string, unknown>;
  if (r.status !== 200) throw new Error(`${path}: ${r.status} ${JSON.stringify(body)}`);
  return body;
}
const signin = (token: string, deviceId: string) =>
  call("/auth/id-token/signin", {
    method: "POST",
    headers: json,
    body: JSON.stringify({ id_token: token, provider: BENCH_PROVIDER, device_id: deviceId }),
  });

const counts = {} as Record<Operation, number>;
const trips = {} as Record<Operation, number>;
const traces = {} as Record<Operation, string[]>;
async function measure<T>(op: Operation, run: () => Promise<T>): Promise<T> {
  statements = 0;
  roundTrips = 0;
  sqls = [];
  const result = await run();
  counts[op] = statements;
  trips[op] = roundTrips;
  traces[op] = [...sqls];
  return result;
}

try {
  // A token signs in once: a fresh one for each sign-in, minted outside the measured part.
  const tokens = await issuer.mintMany(["count-user-1", "count-user-1", "count-user-1"]);
  const device = "device-count-user-1";
  const first = await measure("new_signin", () => signin(tokens[0]!.token, device));
  if (first["requires_mfa"] !== false) throw new Error(`first sign-in asked for MFA: ${JSON.stringify(first)}`);
  await signin(tokens[1]!.token, device); // the first returning sign-in may still settle per-user state
  const again = await measure("returning_signin", () => signin(tokens[2]!.token, device));
  if (again["requires_mfa"] !== false || typeof again["refresh_token"] !== "string") {
    throw new Error(`returning sign-in gave no tokens: ${JSON.stringify(again)}`);
  }
  await measure("refresh", () =>
    call("/auth/token/refresh", {
      method: "POST",
      headers: json,
      body: JSON.stringify({ refresh_token: again["refresh_token"] }),
    }),
  );
  await measure("me", () =>
    call("/auth/me", { headers: { authorization: `Bearer ${String(again["access_token"])}` } }),
  );

  const out: StatementCounts = {
    database: app.database.dialect,
    statements: counts,
    round_trips: roundTripHookCalled ? trips : null,
    ...(trace ? { trace: traces } : {}),
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
} finally {
  await app.close();
  await issuer.close();
  rmSync(dir, { recursive: true, force: true });
}
