/**
 * `npm run bench`: a side-by-side comparison of ID-token sign-in, reproducible on any machine.
 *
 *   node bench/run.ts [--db sqlite|postgresql] [--only floor,better-auth,service] [--out FILE]
 *
 *   BENCH_SECONDS          seconds per measured phase (default 10)
 *   BENCH_WARMUP_SECONDS   unmeasured load before the measured phases of each server (default 2)
 *   BENCH_TURNS            turns per server of the interleaved phases (default 4; see below)
 *   BENCH_DATABASE_URL     with --db postgresql: a server where we may CREATE DATABASE (a fresh
 *                          database per server and run, dropped at the end)
 *   BENCH_RETURNING_USERS  returning users, signed in once during warm-up (default 1000)
 *   BENCH_NEW_USERS        cap on new users per "new" phase (default 20000; also <= 3000/s)
 *   BENCH_MAX_REQUESTS     cap on requests per phase (default 500000)
 *   BENCH_SOAK_SECONDS     after the other phases of the service: returning sign-ins for this long
 *                          (tokens minted on the fly by the load driver, ES256), reported per
 *                          BENCH_SOAK_SLICE_SECONDS (default 60): rate, p99, RSS, JS heap, database size
 *   --workers 1,2          the whole-machine phase: the service with WORKERS=n for each n, unpinned,
 *                          load from h2load (also unpinned), with the load generator's CPU share
 *
 * On the same machine, each server pinned to core 0 (`taskset -c 0`), the load from a child
 * pinned to core 1 (bench/load.ts):
 *
 *   floor        bench/floor.ts: node:http + jose + better-sqlite3/pg, the same essential work
 *   better-auth  bench/better-auth-server.ts: its ID-token social sign-in
 *   service      `node src/main.ts --config FILE`, production mode (NODE_ENV=production)
 *
 * All verify the same pre-minted RS256 ID tokens of one bench issuer (bench/issuer.ts, in this
 * process). Every server is started, signs each returning user in once and is warmed up; then
 * returning sign-ins, and after them new users' first sign-ins (each new token used once), are
 * measured on the servers in turns: BENCH_TURNS rounds over every server, every other round in
 * reverse, BENCH_SECONDS ÷ BENCH_TURNS a turn (only the server whose turn it is gets load; the
 * others are stopped with SIGSTOP meanwhile), so that a drift of the machine's speed weighs on every server alike. Then,
 * the service alone: gRPC (h2c) and Connect (HTTP/1.1 JSON) sign-ins, h2load's protocol rows,
 * refresh (rotating single-use tokens) and GET /auth/me. Server CPU per operation comes from /proc/<pid>/stat (utime + stime) around
 * each measured phase. Statements per operation of the service come from a separate in-process
 * counting phase (bench/count-statements.ts, the `onQuery` hook); those of the floor and
 * better-auth from their own statement counters under load.
 *
 * Prints one markdown table and writes the full results as JSON under bench/results/.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pg from "pg";
import { startBenchIssuer } from "./issuer.ts";
import { machineTicks, processTree, safeCall, safeRead, treeRssMiB, treeTicks, treeWriteBytes } from "./proc.ts";
import {
  type DbCost,
  observePostgres,
  type PgObserver,
  type PgSnapshot,
  sampleSqliteWal,
  type StatementCost,
} from "./db-cost.ts";
import { CONNECTIONS, type Command, type PhaseResult } from "./protocol.ts";
import type { StatementCounts } from "./count-statements.ts";
import { serviceConfig, writeServiceConfig } from "./service-config.ts";
import { bodyFor, h2loadArgs, h2loadAvailable, parseH2load, type Protocol, signinOutcomes } from "./h2load.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const TARGETS = ["floor", "better-auth", "service", "service-prisma"] as const;
type Target = (typeof TARGETS)[number];

const { values: flags } = parseArgs({
  options: {
    db: { type: "string", default: "sqlite" },
    only: { type: "string" },
    out: { type: "string" },
    workers: { type: "string" },
  },
});
const workerCounts = (flags.workers ?? "")
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s !== "")
  .map(Number);
for (const n of workerCounts)
  if (!Number.isInteger(n) || n < 1) throw new Error(`--workers: ${flags.workers} is not a list of worker counts`);
const db = flags.db as "sqlite" | "postgresql";
if (db !== "sqlite" && db !== "postgresql") throw new Error(`--db must be sqlite or postgresql, not ${flags.db}`);
// `--only none --workers 1,2`: the whole-machine phase alone.
const only = (flags.only ?? TARGETS.join(","))
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s !== "" && s !== "none");
for (const t of only)
  if (!(TARGETS as readonly string[]).includes(t)) throw new Error(`--only: unknown ${t} (use ${TARGETS.join(",")})`);
const targets = TARGETS.filter((t) => only.includes(t));

const num = (name: string, fallback: number) => {
  const v = process.env[name];
  if (v === undefined || v === "") return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number`);
  return n;
};
const SECONDS = num("BENCH_SECONDS", 10);
const WARMUP = num("BENCH_WARMUP_SECONDS", 2);
const RETURNING_USERS = Math.max(CONNECTIONS, Math.floor(num("BENCH_RETURNING_USERS", 1000)));
const NEW_USERS = Math.max(
  CONNECTIONS,
  Math.min(Math.floor(num("BENCH_NEW_USERS", 20_000)), Math.ceil(SECONDS * 3000)),
);
const MAX_REQUESTS = Math.floor(num("BENCH_MAX_REQUESTS", 500_000));
const SOAK_SECONDS = Number(process.env["BENCH_SOAK_SECONDS"] ?? 0);
const SOAK_SLICE_SECONDS = num("BENCH_SOAK_SLICE_SECONDS", 60);
const SHORT_WARMUP = Math.min(WARMUP, 1);
/** Turns per server in the interleaved phases (the sign-in comparison, the whole machine). */
const TURNS = Math.max(1, Math.floor(num("BENCH_TURNS", 4)));
/** Unmeasured load before each turn of the sign-in comparison, seconds. */
const TURN_WARMUP = Math.min(WARMUP, 0.5);
/**
 * Returning sign-ins need a token each (a token signs in once): enough for every returning phase
 * of one server (warm-up, measured, the warm-ups before each turn, gRPC and Connect) at up to
 * 2,500/s. The soak mints its own.
 */
const RETURNING_TOKENS = Math.floor(
  num(
    "BENCH_RETURNING_TOKENS",
    RETURNING_USERS + 2500 * (WARMUP + SECONDS + 2 * TURNS * TURN_WARMUP + 2 * (SHORT_WARMUP + SECONDS)),
  ),
);
const adminUrl = process.env["BENCH_DATABASE_URL"];
if (db === "postgresql" && (adminUrl === undefined || adminUrl === "")) {
  throw new Error(
    "--db postgresql needs BENCH_DATABASE_URL=postgresql://user@host:port/db (a server where we may CREATE DATABASE)",
  );
}

// --- machine, pinning ------------------------------------------------------------------------

const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
const nproc = Number(spawnSync("nproc", { encoding: "utf8" }).stdout?.trim() || cpus().length);
const cpuModel =
  /^model name\s*:\s*(.+)$/m.exec(safeRead("/proc/cpuinfo"))?.[1]?.trim() ?? cpus()[0]?.model ?? "unknown";
const clkTck = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout?.trim() || 100);
let pinned = spawnSync("taskset", ["-c", "0", "true"]).status === 0;
let pinningNote = "servers on core 0 (taskset -c 0), load on core 1 (taskset -c 1)";
if (!pinned) {
  pinningNote = "taskset is missing: everything runs unpinned (numbers are noisier and load competes with the server)";
  log(pinningNote);
} else if (nproc < 2) {
  pinned = false;
  pinningNote = `only ${nproc} CPU: everything runs unpinned on it (load competes with the server)`;
  log(pinningNote);
}
const pin = (core: number, argv: string[]) => (pinned ? ["taskset", "-c", String(core), ...argv] : argv);

// --- children ---------------------------------------------------------------------------------

const children = new Set<ChildProcess>();
const cleanups: (() => Promise<void> | void)[] = [];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

interface RunningServer {
  name: string;
  /** Its database: the PostgreSQL database's name, or the SQLite file (with -wal and -shm beside it). */
  database?: { postgresql: string } | { sqliteFile: string } | undefined;
  url: string;
  pid: number;
  output(): string;
  /** Every process of it stopped (SIGSTOP) while others take their turn under load, then continued. */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

/**
 * SIGSTOP or SIGCONT to every process of a server. In the interleaved phases the servers waiting
 * for their turn are stopped: an idle server is not quite idle (the service's WAL checkpointer and
 * guard wake every 10 ms, ~5 % of a core per process on this VM), and that would be taken from
 * the server under load beside it.
 */
function signalTree(pid: number, signal: "SIGSTOP" | "SIGCONT"): void {
  for (const p of processTree(pid)) safeCall(() => process.kill(p, signal));
}

function childEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { PATH: process.env["PATH"] ?? "", NODE_ENV: "production", HOST: "127.0.0.1" };
  for (const k of ["HOME", "TMPDIR", "LANG"]) if (process.env[k] !== undefined) env[k] = process.env[k]!;
  return { ...env, ...extra };
}

/** Starts a server pinned to core 0 on a free port and waits until `readyPath` answers 200. */
async function startServer(
  name: string,
  args: string[],
  env: Record<string, string>,
  readyPath: string,
  options: { unpinned?: boolean; database?: RunningServer["database"] } = {},
): Promise<RunningServer> {
  const port = await freePort();
  const argv = options.unpinned === true ? [process.execPath, ...args] : pin(0, [process.execPath, ...args]);
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: ROOT,
    env: childEnv({ ...env, PORT: String(port) }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let output = "";
  const keep = (d: Buffer) => {
    output = (output + d.toString()).slice(-20_000);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${output}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${name} was not ready within 90 s:\n${output}`);
    }
    try {
      const r = await fetch(`${url}${readyPath}`, { signal: AbortSignal.timeout(2000) });
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  // taskset execs node in place: the pid we spawned is the server's.
  const exe = safeRead(`/proc/${child.pid}/cmdline`).split("\0")[0] ?? "";
  if (exe !== process.execPath)
    log(`warning: pid ${child.pid} of ${name} runs "${exe}", not node: CPU figures may be wrong`);
  return {
    name,
    url,
    pid: child.pid!,
    database: options.database,
    output: () => output,
    pause: () => signalTree(child.pid!, "SIGSTOP"),
    resume: () => signalTree(child.pid!, "SIGCONT"),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        signalTree(child.pid!, "SIGCONT"); // a paused server would not see the SIGTERM
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
        await exited;
        clearTimeout(timer);
      }
      children.delete(child);
    },
  };
}

/** The load child, pinned to core 1, answering one phase per message. */
function startLoad(): { send(command: Command): Promise<unknown>; close(): void } {
  const argv = pin(1, [process.execPath, join(ROOT, "bench/load.ts")]);
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: ROOT,
    env: childEnv({}),
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  children.add(child);
  let id = 0;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  child.on("message", (m: { id: number; ok: boolean; result?: unknown; error?: string }) => {
    const w = waiting.get(m.id);
    waiting.delete(m.id);
    if (m.ok) w?.resolve(m.result);
    else w?.reject(new Error(`load driver: ${m.error}`));
  });
  child.once("exit", (code) => {
    for (const w of waiting.values()) w.reject(new Error(`load driver exited (${code})`));
    waiting.clear();
  });
  return {
    send(command) {
      return new Promise((resolve, reject) => {
        const n = ++id;
        waiting.set(n, { resolve, reject });
        child.send({ id: n, command });
      });
    },
    close() {
      if (child.connected) child.disconnect();
      children.delete(child);
    },
  };
}

// --- databases --------------------------------------------------------------------------------

/** A fresh PostgreSQL database on the BENCH_DATABASE_URL server, dropped at the end. */
async function freshDatabase(label: string): Promise<string> {
  const name = `bench_${label.replace(/[^a-z0-9]/g, "_")}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  cleanups.push(async () => {
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.end();
  });
  const url = new URL(adminUrl!);
  url.pathname = `/${name}`;
  return url.toString();
}

// --- phases -----------------------------------------------------------------------------------

interface Measured extends PhaseResult {
  /** Server CPU (user + system) per answered request, ms. */
  cpu_ms_per_op: number | null;
  /** Statements per sign-in the server handled, from its own counters (floor, better-auth). */
  statements_per_op: number | null;
  /** Whether the phase ended at its request count (before its time bound). */
  ended_by: "count" | "time";
  /** The server's resident memory at the end of the phase (every process of it), MiB. */
  rss_mib?: number;
  /** SQLite: the -wal file's size when the phase ended, MiB (a WAL that never restarts grows here). */
  wal_mib?: number;
  /** What the phase cost the database per operation. */
  db?: DbCost;
}

/** The server's own counters: SQL statements run and sign-in requests handled so far. */
async function statementCount(server: RunningServer): Promise<{ statements: number; signins: number } | null> {
  try {
    const r = await fetch(`${server.url}/bench/statements`);
    return r.ok ? ((await r.json()) as { statements: number; signins: number }) : null;
  } catch {
    return null;
  }
}

const failures: string[] = [];

function checkPhase(where: string, r: PhaseResult): void {
  const bad = r.non2xx + r.errors + r.mfa_challenges;
  if (bad > 0) {
    const line = `${where}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.mfa_challenges} MFA challenges; first: ${r.first_failure ?? "?"}`;
    failures.push(line);
    log(`FAILURES ${line}`);
  }
}

async function warm(
  load: ReturnType<typeof startLoad>,
  server: RunningServer,
  label: string,
  command: Command,
): Promise<void> {
  const r = (await load.send(command)) as PhaseResult;
  log(`  ${server.name} ${label}: ${r.ok} ok in ${r.elapsed_s} s`);
  checkPhase(`${server.name} ${label} (warm-up)`, r);
}

async function measure(
  load: ReturnType<typeof startLoad>,
  server: RunningServer,
  label: string,
  command: Command & { maxRequests: number },
  countStatements: boolean,
): Promise<Measured> {
  const s0 = countStatements ? await statementCount(server) : null;
  const d0 = await dbBefore(server);
  const t0 = treeTicks(server.pid);
  const r = (await load.send(command)) as PhaseResult;
  const t1 = treeTicks(server.pid);
  const cost = await dbAfter(server, d0, r.requests);
  const s1 = countStatements ? await statementCount(server) : null;
  const done = r.requests;
  const m: Measured = {
    ...r,
    cpu_ms_per_op: done === 0 ? null : +((((t1 - t0) / clkTck) * 1000) / done).toFixed(3),
    statements_per_op:
      s0 === null || s1 === null || s1.signins === s0.signins
        ? null
        : +((s1.statements - s0.statements) / (s1.signins - s0.signins)).toFixed(2),
    ended_by: r.requests >= command.maxRequests ? "count" : "time",
    rss_mib: treeRssMiB(server.pid),
    db: cost,
    ...walAtEnd(server.database),
  };
  log(
    `  ${server.name} ${label}: ${m.rate}/s, p50 ${m.p50_ms} ms, p99 ${m.p99_ms} ms, ${m.ok} ok, non-2xx ${m.non2xx}, cpu ${m.cpu_ms_per_op} ms/op, rss ${m.rss_mib} MiB, db ${JSON.stringify({ ...cost, statements: undefined })}`,
  );
  checkPhase(`${server.name} ${label}`, r);
  return m;
}

/** The database's counters before a phase (and pg_stat_statements emptied). */
async function dbBefore(
  server: RunningServer,
): Promise<{ pg?: PgSnapshot; writes: number; wal?: ReturnType<typeof sampleSqliteWal> }> {
  const writes = treeWriteBytes(server.pid);
  const d = server.database;
  if (d !== undefined && "sqliteFile" in d) return { writes, wal: sampleSqliteWal(d.sqliteFile) };
  if (pgObserver === undefined) return { writes };
  await pgObserver.resetStatements();
  return { pg: await pgObserver.snapshot(), writes: writes + pgObserver.writeBytes() };
}

/** What the phase cost the database per operation. */
async function dbAfter(
  server: RunningServer,
  before: { pg?: PgSnapshot; writes: number; wal?: ReturnType<typeof sampleSqliteWal> },
  ops: number,
): Promise<DbCost> {
  const per = (v: number, digits = 0) => (ops === 0 || !Number.isFinite(v) ? null : +(v / ops).toFixed(digits));
  if (pgObserver === undefined || before.pg === undefined) {
    const wal = before.wal?.stop();
    return {
      db_cpu_ms_per_op: null,
      wal_bytes_per_op: wal === undefined ? null : per(wal.bytes),
      disk_write_bytes_per_op: per(treeWriteBytes(server.pid) - before.writes),
    };
  }
  const after = await pgObserver.snapshot();
  const writes = treeWriteBytes(server.pid) + pgObserver.writeBytes();
  const { cpuMs, walBytes } = await pgObserver.between(before.pg, after);
  const database =
    server.database !== undefined && "postgresql" in server.database ? server.database.postgresql : undefined;
  const statements = database === undefined ? undefined : await pgObserver.statements(database, ops);
  return {
    db_cpu_ms_per_op: per(cpuMs, 3),
    wal_bytes_per_op: per(walBytes),
    disk_write_bytes_per_op: per(writes - before.writes),
    ...(statements === undefined ? {} : { statements }),
  };
}

/** The database's size on disk now, bytes (SQLite: the file, its -wal and its -shm). */
async function databaseBytes(server: RunningServer): Promise<number | null> {
  const d = server.database;
  if (d === undefined) return null;
  if ("postgresql" in d) return pgObserver === undefined ? null : pgObserver.databaseSize(d.postgresql);
  return ["", "-wal", "-shm"].reduce(
    (n, suffix) => n + (safeCall(() => statSync(`${d.sqliteFile}${suffix}`).size) ?? 0),
    0,
  );
}

/** SQLite: the -wal file's size now, MiB (a bounded WAL restarts; one that never does grows here). */
function walAtEnd(d: RunningServer["database"]): { wal_mib?: number } {
  if (d === undefined || !("sqliteFile" in d)) return {};
  return { wal_mib: +((safeCall(() => statSync(`${d.sqliteFile}-wal`).size) ?? 0) / 1048576).toFixed(1) };
}

/** The server's JS heap in use (nodejs_heap_size_used_bytes from its /metrics; a supervisor's: every worker's), MiB. */
async function heapMiB(server: RunningServer): Promise<number | null> {
  try {
    const text = await (await fetch(`${server.url}/metrics`, { headers: { connection: "close" } })).text();
    const v = /^nodejs_heap_size_used_bytes (\S+)$/m.exec(text)?.[1];
    return v === undefined ? null : Math.round(Number(v) / 1048576);
  } catch {
    return null;
  }
}

type Results = Partial<Record<string, Measured>>;

/** One protocol of the h2load comparison (bench/h2load.ts), on core 1, the server on core 0. */
async function measureH2load(
  server: RunningServer,
  protocol: Protocol,
  token: { sub: string; token: string },
): Promise<Measured> {
  const file = join(work, `body-${protocol}`);
  writeFileSync(file, bodyFor(protocol, token.token, `device-${token.sub}`));
  // One sign-in first, while this process can still answer: it fetches the provider's keys from
  // the bench issuer, which runs in this process and is frozen while h2load runs (spawnSync).
  const first = await fetch(`${server.url}/auth/id-token/signin`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: bodyFor("rest", token.token, `device-${token.sub}`),
  });
  if (first.status !== 200)
    throw new Error(`h2load ${protocol}: the first sign-in answered ${first.status} ${await first.text()}`);
  const before = await signinOutcomes(server.url);
  const t0 = treeTicks(server.pid);
  const argv = pin(1, ["h2load", ...h2loadArgs(protocol, server.url, file, SECONDS, CONNECTIONS)]);
  const out = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: (SECONDS + 60) * 1000 });
  const t1 = treeTicks(server.pid);
  const after = await signinOutcomes(server.url);
  const parsed = parseH2load(out.stdout ?? "");
  const ok = (after["ok"] ?? 0) - (before["ok"] ?? 0);
  const failed = Object.keys(after)
    .filter((k) => k !== "ok")
    .reduce((n, k) => n + (after[k] ?? 0) - (before[k] ?? 0), 0);
  // The measured window excludes h2load's warm-up second; the server's CPU covers both.
  const m: Measured = {
    requests: parsed.done,
    ok: Math.min(ok, parsed.done),
    non2xx: failed + (protocol === "grpc" ? 0 : parsed.done - parsed.status2xx),
    errors: 0,
    mfa_challenges: 0,
    elapsed_s: SECONDS,
    rate: Math.round(parsed.rate),
    p50_ms: parsed.meanMs,
    p99_ms: null,
    status_counts: {},
    cpu_ms_per_op: ok === 0 ? null : +((((t1 - t0) / clkTck) * 1000) / ok).toFixed(3),
    statements_per_op: null,
    ended_by: "time",
  };
  log(
    `  ${server.name} h2load ${protocol}: ${m.rate}/s, mean ${m.p50_ms} ms, ${ok} ok, failed ${failed}, cpu ${m.cpu_ms_per_op} ms/op`,
  );
  if (m.non2xx > 0 || out.status !== 0)
    failures.push(
      `${server.name} h2load ${protocol}: ${m.non2xx} failed, exit ${out.status}\n${(out.stdout ?? "").slice(-400)}${out.stderr ?? ""}`,
    );
  return m;
}

/** A server of the comparison, started and waiting for its phases. */
interface Running {
  target: Target;
  server: RunningServer;
  path: string;
  style: "rest" | "better-auth";
  /** Keep the answers' tokens (the service's: its refresh and /me phases use them). */
  collect: boolean;
  /** Its own statement counters (floor, better-auth); the service's come from count-statements.ts. */
  countStatements: boolean;
}

/** Starts one server of the comparison, pinned to core 0, on its own fresh database. */
async function startTarget(target: Target): Promise<Running> {
  const dataDir = join(work, target);
  mkdirSync(dataDir, { recursive: true });
  const dbEnv: Record<string, string> = db === "postgresql" ? { BENCH_DATABASE_URL: await freshDatabase(target) } : {};
  const serverArgs = ["--issuer", issuer.issuer, "--db", db, "--data-dir", dataDir];
  if (target === "floor") {
    const server = await startServer("floor", ["bench/floor.ts", ...serverArgs], dbEnv, "/healthz", {
      database: pgRef(dbEnv),
    });
    return { target, server, path: "/auth/id-token/signin", style: "rest", collect: false, countStatements: true };
  }
  if (target === "better-auth") {
    const server = await startServer("better-auth", ["bench/better-auth-server.ts", ...serverArgs], dbEnv, "/healthz", {
      database: pgRef(dbEnv),
    });
    return {
      target,
      server,
      path: "/api/auth/sign-in/social",
      style: "better-auth",
      collect: false,
      countStatements: true,
    };
  }
  const config = serviceConfig({
    issuer: issuer.issuer,
    dataDir: join(dataDir, "data"),
    databaseUrl: dbEnv["BENCH_DATABASE_URL"],
  });
  if (target === "service-prisma") {
    // The same design (one read, one write per sign-in) through Prisma Client alone: what the
    // driver path buys.
    const file = writeServiceConfig(dataDir, {
      ...config,
      database: { ...(config["database"] as object | undefined), hot_path: "prisma" },
    });
    const server = await startServer("service-prisma", ["src/main.ts", "--config", file], {}, "/readyz", {
      database: serviceDbRef(dbEnv, dataDir),
    });
    return { target, server, path: "/auth/id-token/signin", style: "rest", collect: false, countStatements: false };
  }
  const file = writeServiceConfig(dataDir, config);
  // BENCH_SEED_DB: a SQLite file made by bench/seed.ts (e.g. 1,000,000 users, 5,000,000 audit
  // rows): the service starts on a copy of it, to show the figures do not depend on size.
  const seed = process.env["BENCH_SEED_DB"];
  if (seed !== undefined && seed !== "" && db === "sqlite") {
    mkdirSync(join(dataDir, "data"), { recursive: true });
    cpSync(seed, join(dataDir, "data", "identity.db"));
    log(`service: on a copy of ${seed}`);
  }
  const server = await startServer("service", [...serviceNodeArgs(), "src/main.ts", "--config", file], {}, "/readyz", {
    database: serviceDbRef(dbEnv, dataDir),
  });
  return { target, server, path: "/auth/id-token/signin", style: "rest", collect: true, countStatements: false };
}

/** Each returning user signs in once (a first sign-in that creates them), then unmeasured load. */
async function warmSignin(load: ReturnType<typeof startLoad>, r: Running): Promise<void> {
  const base = { type: "http-signin" as const, url: r.server.url, path: r.path, style: r.style };
  await warm(load, r.server, `first sign-in of ${RETURNING_USERS} returning users`, {
    ...base,
    set: "returning-once",
    seconds: 300,
    maxRequests: RETURNING_USERS,
    collect: r.collect,
  });
  await warm(load, r.server, `warm-up ${WARMUP} s`, {
    ...base,
    set: "returning",
    seconds: WARMUP,
    maxRequests: MAX_REQUESTS,
  });
}

/**
 * The order of BENCH_TURNS rounds over `items`: each round all of them, every other round in
 * reverse (A B C, C B A, A B C, ...), so each item's turns sit around the same centre in time.
 */
function turnOrder<T>(items: T[], rounds: number): { item: T; round: number }[] {
  return Array.from({ length: rounds }, (_, round) =>
    (round % 2 === 0 ? items : [...items].reverse()).map((item) => ({ item, round })),
  ).flat();
}

/**
 * One kind of sign-in (returning users, or new users' first) measured on every server in turns:
 * TURNS rounds, each over every server, every other round in reverse (A B C C B A A B C C B A),
 * a turn BENCH_SECONDS ÷ TURNS long, each server's turns summed into its figures. A shared VM's
 * speed moves over minutes and sometimes halves for tens of seconds (the speed probe saw it);
 * measured one server after the other, that went straight into the ratios between servers. In
 * short mirrored turns every server gets its share of the slow and the fast moments. Every
 * server but the one under load is stopped (SIGSTOP) meanwhile: see signalTree.
 */
async function interleaved(
  load: ReturnType<typeof startLoad>,
  running: Running[],
  kind: "returning" | "new",
): Promise<Map<Target, Measured>> {
  const parts = new Map<Target, Measured[]>();
  for (const r of running) r.server.pause();
  for (const { item: r, round } of turnOrder(running, TURNS)) {
    r.server.resume();
    // Unmeasured, before each turn: what a waiting server's timers did on waking (a pg pool closes
    // its connections after 10 s idle, so the next requests connect and prepare again) happens
    // here, not in the measured turn. Returning users' tokens in both kinds (new users' are counted).
    await warm(load, r.server, "turn warm-up", {
      type: "http-signin",
      url: r.server.url,
      path: r.path,
      style: r.style,
      set: "returning",
      seconds: TURN_WARMUP,
      maxRequests: MAX_REQUESTS,
    });
    const m = await measure(
      load,
      r.server,
      `${kind === "new" ? "new-user" : "returning"} sign-in, turn ${round + 1} of ${TURNS}`,
      {
        type: "http-signin",
        url: r.server.url,
        path: r.path,
        style: r.style,
        set: kind,
        seconds: SECONDS / TURNS,
        maxRequests: kind === "new" ? Math.ceil(NEW_USERS / TURNS) : MAX_REQUESTS,
      },
      r.countStatements,
    );
    r.server.pause();
    parts.set(r.target, [...(parts.get(r.target) ?? []), m]);
  }
  for (const r of running) r.server.resume();
  const out = new Map<Target, Measured>();
  for (const [target, turns] of parts) {
    const m = combine(turns);
    log(
      `  ${target} ${kind === "new" ? "new-user" : "returning"} sign-in, all turns: ${m.rate}/s, cpu ${m.cpu_ms_per_op} ms/op`,
    );
    out.set(target, m);
  }
  return out;
}

/**
 * A phase measured in parts, as one: counts and time summed, the rate over the summed time, per
 * operation figures weighted by each part's requests; p50 and p99 the parts' request-weighted
 * mean (parts of equal length and load: close to the whole's), memory and WAL size the last part's.
 */
function combine(parts: Measured[]): Measured {
  if (parts.length === 1) return parts[0]!;
  const sum = (f: (m: Measured) => number) => parts.reduce((x, m) => x + f(m), 0);
  const requests = sum((m) => m.requests);
  const elapsed = sum((m) => m.elapsed_s);
  const ok = sum((m) => m.ok);
  const weighted = (f: (m: Measured) => number | null | undefined, digits: number): number | null => {
    let total = 0;
    let weight = 0;
    for (const m of parts) {
      const v = f(m);
      if (v === null || v === undefined) continue;
      total += v * m.requests;
      weight += m.requests;
    }
    return weight === 0 ? null : +(total / weight).toFixed(digits);
  };
  const status_counts: Record<string, number> = {};
  for (const m of parts)
    for (const [k, v] of Object.entries(m.status_counts)) status_counts[k] = (status_counts[k] ?? 0) + v;
  const last = parts[parts.length - 1]!;
  const first_failure = parts.find((m) => m.first_failure !== undefined)?.first_failure;
  const db: DbCost | undefined = parts.every((m) => m.db === undefined)
    ? undefined
    : {
        db_cpu_ms_per_op: weighted((m) => m.db?.db_cpu_ms_per_op, 3),
        wal_bytes_per_op: weighted((m) => m.db?.wal_bytes_per_op, 0),
        disk_write_bytes_per_op: weighted((m) => m.db?.disk_write_bytes_per_op, 0),
        ...combineStatements(parts),
      };
  return {
    requests,
    ok,
    non2xx: sum((m) => m.non2xx),
    errors: sum((m) => m.errors),
    mfa_challenges: sum((m) => m.mfa_challenges),
    elapsed_s: +elapsed.toFixed(3),
    rate: elapsed === 0 ? 0 : +(ok / elapsed).toFixed(1),
    p50_ms: weighted((m) => m.p50_ms, 2),
    p99_ms: weighted((m) => m.p99_ms, 2),
    status_counts,
    ...(first_failure === undefined ? {} : { first_failure }),
    cpu_ms_per_op: weighted((m) => m.cpu_ms_per_op, 3),
    statements_per_op: weighted((m) => m.statements_per_op, 2),
    ended_by: parts.some((m) => m.ended_by === "count") ? "count" : "time",
    ...(last.rss_mib === undefined ? {} : { rss_mib: last.rss_mib }),
    ...(last.wal_mib === undefined ? {} : { wal_mib: last.wal_mib }),
    ...(db === undefined ? {} : { db }),
  };
}

/** pg_stat_statements rows of a phase's parts, as one phase's: calls and times summed per statement. */
function combineStatements(parts: Measured[]): { statements?: StatementCost[] } {
  if (parts.every((m) => m.db?.statements === undefined)) return {};
  const ops = parts.reduce((x, m) => x + m.requests, 0);
  const by = new Map<string, { calls: number; exec: number; plan: number; rows: number; wal: number }>();
  for (const m of parts) {
    for (const st of m.db?.statements ?? []) {
      const calls = st.calls_per_op * m.requests;
      const a = by.get(st.query) ?? { calls: 0, exec: 0, plan: 0, rows: 0, wal: 0 };
      a.calls += calls;
      a.exec += st.exec_ms * calls;
      a.plan += st.plan_ms * calls;
      a.rows += st.rows_per_call * calls;
      a.wal += st.wal_bytes_per_call * calls;
      by.set(st.query, a);
    }
  }
  const statements = [...by]
    .filter(([, a]) => a.calls > 0)
    .sort(([, a], [, b]) => b.exec + b.plan - (a.exec + a.plan))
    .map(([query, a]) => ({
      query,
      calls_per_op: +(a.calls / ops).toFixed(3),
      exec_ms: +(a.exec / a.calls).toFixed(4),
      plan_ms: +(a.plan / a.calls).toFixed(4),
      rows_per_call: +(a.rows / a.calls).toFixed(2),
      wal_bytes_per_call: Math.round(a.wal / a.calls),
    }));
  return { statements };
}

/** The service's phases after the comparison, alone on core 0: gRPC, Connect, h2load, refresh, /me, the soak. */
async function serviceOtherPhases(
  load: ReturnType<typeof startLoad>,
  server: RunningServer,
  oneToken: { sub: string; token: string },
  r: Results,
): Promise<void> {
  for (const protocol of ["grpc", "connect"] as const) {
    const base = { type: "rpc-signin" as const, url: server.url, protocol };
    await warm(load, server, `${protocol} warm-up`, { ...base, seconds: SHORT_WARMUP, maxRequests: MAX_REQUESTS });
    r[protocol] = await measure(
      load,
      server,
      `${protocol} returning sign-in`,
      { ...base, seconds: SECONDS, maxRequests: MAX_REQUESTS },
      false,
    );
  }
  // One user signs in again and again: its user row is share-locked (no writer waits on
  // another) and written at most once a minute (last-seen resolution), so on PostgreSQL too
  // the rows compare protocols, and say whether the Node client rows are client-bound.
  if (ensureH2load()) {
    for (const protocol of ["rest", "connect", "grpc"] as const)
      r[`h2load-${protocol}`] = await measureH2load(server, protocol, oneToken);
  } else {
    log("h2load (Debian package nghttp2-client) is missing: no protocol comparison");
  }
  for (const [key, type, label] of [
    ["refresh", "http-refresh", "refresh"],
    ["me", "http-me", "GET /auth/me"],
  ] as const) {
    await warm(load, server, `${key} warm-up`, {
      type,
      url: server.url,
      seconds: SHORT_WARMUP,
      maxRequests: MAX_REQUESTS,
    });
    r[key] = await measure(
      load,
      server,
      label,
      { type, url: server.url, seconds: SECONDS, maxRequests: MAX_REQUESTS },
      false,
    );
  }
  if (SOAK_SECONDS > 0) r["soak"] = await soak(load, server, runId);
}

// --- main -------------------------------------------------------------------------------------

const runId = randomBytes(3).toString("hex");
let pgObserver: PgObserver | undefined;

/** One slice of the soak: the service's rate and p99 over it, and its memory and database size at its end. */
interface SoakSlice {
  at_s: number;
  rate: number;
  p99_ms: number | null;
  rss_mib: number;
  heap_mib: number | null;
  database_mib: number | null;
  bad: number;
}
const soakSlices: SoakSlice[] = [];

/** The PostgreSQL database a server's BENCH_DATABASE_URL names. */
function pgRef(env: Record<string, string>): RunningServer["database"] {
  const url = env["BENCH_DATABASE_URL"];
  return url === undefined ? undefined : { postgresql: new URL(url).pathname.slice(1) };
}

/** The service's database: PostgreSQL's, or its SQLite file in its data dir. */
function serviceDbRef(env: Record<string, string>, dataDir: string): RunningServer["database"] {
  return pgRef(env) ?? { sqliteFile: join(dataDir, "data", "identity.db") };
}

/**
 * BENCH_SOAK_SECONDS of returning sign-ins, each token minted on the fly by the load driver
 * (ES256, provider bench-soak: bounded memory for any length), reported per slice
 * (BENCH_SOAK_SLICE_SECONDS, a minute by default): enough slices to tell a plateau from a leak.
 */
async function soak(load: ReturnType<typeof startLoad>, server: RunningServer, run: string): Promise<Measured> {
  await load.send({
    type: "minter",
    spec: issuer.soakMinter,
    subjects: { prefix: `ret-${run}-`, count: RETURNING_USERS },
  });
  const base = {
    type: "http-signin" as const,
    url: server.url,
    path: "/auth/id-token/signin",
    style: "rest" as const,
    set: "minted" as const,
  };
  await warm(load, server, "soak warm-up", { ...base, seconds: SHORT_WARMUP, maxRequests: MAX_REQUESTS });
  let all: Measured | undefined;
  for (let at = 0; at < SOAK_SECONDS;) {
    const seconds = Math.min(SOAK_SLICE_SECONDS, SOAK_SECONDS - at);
    const m = await measure(
      load,
      server,
      `soak ${at + seconds} s`,
      { ...base, seconds, maxRequests: MAX_REQUESTS },
      false,
    );
    at += seconds;
    const bytes = await databaseBytes(server);
    const slice: SoakSlice = {
      at_s: at,
      rate: m.rate,
      p99_ms: m.p99_ms,
      rss_mib: m.rss_mib ?? 0,
      heap_mib: await heapMiB(server),
      database_mib: bytes === null ? null : +(bytes / 1048576).toFixed(1),
      bad: m.non2xx + m.errors + m.mfa_challenges,
    };
    soakSlices.push(slice);
    log(
      `  soak ${at} s: ${slice.rate}/s, p99 ${slice.p99_ms} ms, RSS ${slice.rss_mib} MiB, heap ${slice.heap_mib} MiB, database ${slice.database_mib} MiB`,
    );
    all ??= m;
  }
  return all!;
}
const results: Record<Target, Results> = { floor: {}, "better-auth": {}, service: {}, "service-prisma": {} };

/**
 * The machine's speed on the servers' core, taken before and after the sign-in turns (and after
 * the service's other phases): SHA-256 of 1 KiB, hashes per second over 0.5 s, in a child pinned
 * like the servers. A shared VM's speed can move over minutes (seen: the same GET /auth/me
 * costing 0.23 and 0.51 ms of CPU in two runs); the turns spread a steady drift over every server
 * alike, and a spread here says the ground moved during the run, so the report says so.
 */
const probes: Partial<Record<Target, { before: number; after: number }>> = {};
const PROBE = `const { createHash } = require("node:crypto"); const b = Buffer.alloc(1024, 7); let n = 0;
const end = performance.now() + 500; while (performance.now() < end) { for (let i = 0; i < 64; i++) createHash("sha256").update(b).digest(); n += 64; }
console.log(Math.round(n / 0.5));`;
function speedProbe(): number {
  const argv = pin(0, [process.execPath, "-e", PROBE]);
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: 10_000 });
  return Number(r.stdout.trim()) || 0;
}

function probeLines(): string[] {
  const entries = Object.entries(probes) as [Target, { before: number; after: number }][];
  if (entries.length === 0) return [];
  const all = entries.flatMap(([, p]) => [p.before, p.after]);
  const spread = Math.max(...all) / Math.min(...all);
  return [
    `- machine speed on core 0 (SHA-256 of 1 KiB per second, before → after the sign-in turns; the service's "after" also after its other phases): ${entries.map(([t, p]) => `${t} ${p.before.toLocaleString("en-US")} → ${p.after.toLocaleString("en-US")}`).join("; ")}; spread ${spread.toFixed(2)}×${spread > 1.1 ? ": the machine's speed moved during this run by more than 10 %; the turns spread a drift over every server alike, but a sudden change inside one turn still lands on one server: compare runs whose probes agree" : ""}`,
  ];
}
let counts: StatementCounts | null = null;
const started = new Date();
const issuer = await startBenchIssuer();
cleanups.push(() => issuer.close());
const work = mkdtempSync(join(tmpdir(), "identity-bench-"));
cleanups.push(() => rmSync(work, { recursive: true, force: true }));

async function main(): Promise<void> {
  log(`machine: ${nproc} CPUs, ${cpuModel}, node ${process.version}; ${pinningNote}`);
  const anyTarget = targets.length > 0;
  if (anyTarget)
    log(`minting ${RETURNING_TOKENS} ID tokens of ${RETURNING_USERS} returning users + ${NEW_USERS} of new users`);
  // The first RETURNING_USERS are one per user (their first sign-in), then round the users again.
  const returning = anyTarget
    ? await issuer.mintMany(Array.from({ length: RETURNING_TOKENS }, (_, i) => `ret-${runId}-${i % RETURNING_USERS}`))
    : [];
  const fresh = anyTarget
    ? await issuer.mintMany(Array.from({ length: NEW_USERS }, (_, i) => `new-${runId}-${i}`))
    : [];
  const tokensFile = join(work, "tokens.json");
  writeFileSync(tokensFile, JSON.stringify({ returning, fresh }));

  if (targets.includes("service")) {
    log("counting statements per operation (in-process, no load)");
    const env: Record<string, string> = db === "postgresql" ? { BENCH_DATABASE_URL: await freshDatabase("count") } : {};
    const r = spawnSync(process.execPath, [join(ROOT, "bench/count-statements.ts"), "--db", db], {
      cwd: ROOT,
      env: childEnv(env),
      encoding: "utf8",
      timeout: 120_000,
    });
    if (r.status !== 0) throw new Error(`counting phase failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
    counts = JSON.parse(r.stdout.trim().split("\n").pop()!) as StatementCounts;
  }

  if (db === "postgresql") {
    pgObserver = await observePostgres(adminUrl!, clkTck);
    const observer = pgObserver;
    cleanups.push(() => observer.close());
    if (observer.statementsUnavailable !== null) log(observer.statementsUnavailable);
  }
  const load = startLoad();
  cleanups.push(() => load.close());
  await load.send({ type: "tokens", file: tokensFile });

  // Every server first: started, each returning user signed in once, warmed up. Then the measured
  // sign-in phases in turns (interleaved, below), then the service's other phases alone.
  const running: Running[] = [];
  try {
    for (const target of targets) {
      log(`${target}: starting`);
      running.push(await startTarget(target));
    }
    await load.send({ type: "reset" });
    for (const r of running) await warmSignin(load, r);
    const before = speedProbe();
    for (const kind of ["returning", "new"] as const) {
      for (const [target, m] of await interleaved(load, running, kind)) results[target][kind] = m;
    }
    const after = speedProbe();
    log(`  machine speed probe (SHA-256/s on core 0): ${before} before, ${after} after the sign-in phases`);
    for (const r of running) probes[r.target] = { before, after };
    for (const r of running.filter((r) => r.target !== "service")) await r.server.stop();
    const service = running.find((r) => r.target === "service");
    if (service !== undefined) {
      await serviceOtherPhases(load, service.server, returning[0]!, results.service);
      probes.service = { before, after: speedProbe() };
      const warnings = service.server
        .output()
        .split("\n")
        .filter((l) => l.includes('"level":"error"'));
      if (warnings.length > 0) log(`service logged ${warnings.length} error lines, e.g. ${warnings[0]}`);
    }
  } finally {
    for (const r of running) await r.server.stop();
  }
  if (workerCounts.length > 0) {
    if (!ensureH2load()) {
      failures.push("--workers needs h2load (Debian's nghttp2-client): not installed, and not root to install it");
    } else {
      await measureWholeMachines();
    }
  }
}

/**
 * BENCH_SERVICE_NODE_ARGS: node flags for the service, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
 * to profile it (workers inherit them: a profile per process).
 */
function serviceNodeArgs(): string[] {
  return (process.env["BENCH_SERVICE_NODE_ARGS"] ?? "").split(" ").filter((a) => a !== "");
}

// --- whole machine: the service with WORKERS=n, unpinned, load from h2load ----------------

/** h2load processes of the whole-machine phase, each with its own user (one user's sign-ins serialize on its row on PostgreSQL). */
const LOADERS = 4;

interface WholeMachine {
  workers: number;
  /** server.worker_balancing: the supervisor's round-robin, or SO_REUSEPORT sockets (kernel). */
  balancing: "round_robin" | "kernel";
  rate: number;
  ok: number;
  failed: number;
  /** Shares of the machine's CPU time (all cores × the phase) over the phase, 0..1. */
  server_share: number;
  load_share: number;
  machine_busy: number;
  server_cpu_ms_per_op: number | null;
  db?: DbCost;
}
const wholeMachine: WholeMachine[] = [];

/** h2load present, or installed from Debian's nghttp2-client when this runs as root. */
function ensureH2load(): boolean {
  if (h2loadAvailable()) return true;
  if (process.getuid?.() !== 0) return false;
  log("installing h2load (apt-get install -y nghttp2-client)");
  const install = () =>
    spawnSync("apt-get", ["install", "-y", "nghttp2-client"], {
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    }).status === 0;
  if (!install()) {
    spawnSync("apt-get", ["update"], { stdio: ["ignore", "ignore", "inherit"] });
    install();
  }
  return h2loadAvailable();
}

/** One h2load run, asynchronous (the bench issuer in this process keeps answering); its CPU from its shell's cutime/cstime. */
function runH2load(args: string[]): Promise<{ out: string; ticks: number; status: number | null }> {
  // `read < /proc/$$/stat` runs in the shell itself: its cutime + cstime are then h2load's CPU.
  const script = 'h2load "$@"; s=$?; read -r line < /proc/$$/stat; echo "@@stat ${line##*) }"; exit $s';
  const child = spawn("sh", ["-c", script, "sh", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  return new Promise((resolve) => {
    child.once("exit", (status) => {
      children.delete(child);
      const fields = (/^@@stat (.+)$/m.exec(out)?.[1] ?? "").split(" ");
      // Fields from 3 (state) on: cutime and cstime are fields 16 and 17.
      resolve({ out, ticks: Number(fields[13] ?? 0) + Number(fields[14] ?? 0), status });
    });
  });
}

/** A configuration of the whole-machine phase, started, its users created. */
interface WholeMachineServer {
  workers: number;
  balancing: WholeMachine["balancing"];
  server: RunningServer;
  /** One request body per h2load process (each its own user's returning sign-in). */
  bodies: string[];
}

/** One turn of a configuration: raw counts, summed over its turns by `wholeMachineOf`. */
interface WholeMachineTurn {
  rate: number;
  ok: number;
  failed: number;
  serverTicks: number;
  loadTicks: number;
  machineTotal: number;
  machineBusy: number;
  db: DbCost;
}

async function startWholeMachine(n: number, balancing: WholeMachine["balancing"]): Promise<WholeMachineServer> {
  const dataDir = join(work, `workers-${n}-${balancing}`);
  mkdirSync(dataDir, { recursive: true });
  const dbEnv: Record<string, string> =
    db === "postgresql" ? { BENCH_DATABASE_URL: await freshDatabase(`workers${n}${balancing}`) } : {};
  const file = writeServiceConfig(
    dataDir,
    serviceConfig({ issuer: issuer.issuer, dataDir: join(dataDir, "data"), databaseUrl: dbEnv["BENCH_DATABASE_URL"] }),
  );
  const label = `service, ${n} worker${n === 1 ? "" : `s (${balancing})`}`;
  const server = await startServer(
    label,
    [...serviceNodeArgs(), "src/main.ts", "--config", file],
    { WORKERS: String(n), WORKER_BALANCING: balancing },
    "/readyz",
    {
      unpinned: true,
      database: serviceDbRef(dbEnv, dataDir),
    },
  );
  const bodies: string[] = [];
  for (let i = 0; i < LOADERS; i++) {
    const sub = `wm-${runId}-${n}-${balancing}-${i}`;
    const body = join(work, `wm-${n}-${balancing}-${i}`);
    writeFileSync(body, bodyFor("rest", await issuer.mint(sub), `device-${sub}`));
    bodies.push(body);
  }
  const w = { workers: n, balancing, server, bodies };
  // First sign-ins while this process can answer the provider's key fetches: they create the
  // users, and every worker fetches the keys once (connections go round-robin).
  await wholeMachineSignins(w);
  return w;
}

/** A few sign-ins of each h2load user, one connection each, so that they reach every worker. */
async function wholeMachineSignins(w: WholeMachineServer): Promise<void> {
  const signin = (i: number) =>
    fetch(`${w.server.url}/auth/id-token/signin`, {
      method: "POST",
      headers: { "content-type": "application/json", connection: "close" },
      body: readFileSync(w.bodies[i % LOADERS]!),
    });
  for (let i = 0; i < LOADERS * w.workers * 2; i++) {
    // The first request after a wait once failed at the socket (one run of eight, kernel balancing
    // on PostgreSQL; not reproduced alone): it is said, and tried again once; a second failure
    // ends the run.
    const r = await signin(i).catch(async (e: unknown) => {
      log(`  ${w.server.name}: a warm-up sign-in failed (${String((e as Error).cause ?? e)}); once more`);
      await new Promise((resolve) => setTimeout(resolve, 500));
      return signin(i);
    });
    if (r.status !== 200) throw new Error(`whole-machine warm-up sign-in answered ${r.status} ${await r.text()}`);
  }
}

async function wholeMachineTurn(w: WholeMachineServer, seconds: number): Promise<WholeMachineTurn> {
  const { server } = w;
  const before = await signinOutcomes(server.url);
  const d0 = await dbBefore(server);
  const m0 = machineTicks();
  const s0 = treeTicks(server.pid);
  const runs = await Promise.all(
    w.bodies.map((b) => runH2load(h2loadArgs("rest", server.url, b, seconds, Math.ceil(CONNECTIONS / LOADERS)))),
  );
  const m1 = machineTicks();
  const s1 = treeTicks(server.pid);
  const after = await signinOutcomes(server.url);
  const ok = (after["ok"] ?? 0) - (before["ok"] ?? 0);
  const cost = await dbAfter(server, d0, ok);
  const failed = Object.keys(after)
    .filter((k) => k !== "ok")
    .reduce((x, k) => x + (after[k] ?? 0) - (before[k] ?? 0), 0);
  const parsed = runs.map((r) => parseH2load(r.out));
  const turn: WholeMachineTurn = {
    rate: parsed.reduce((x, p) => x + p.rate, 0),
    ok,
    failed: failed + parsed.reduce((x, p) => x + p.done - p.status2xx, 0),
    serverTicks: s1 - s0,
    loadTicks: runs.reduce((x, r) => x + r.ticks, 0),
    machineTotal: m1.total - m0.total,
    machineBusy: m1.busy - m0.busy,
    db: cost,
  };
  log(
    `  ${server.name}: ${Math.round(turn.rate)}/s, ${ok} ok, ${turn.failed} failed; CPU shares: server ${(turn.serverTicks / turn.machineTotal).toFixed(3)}, h2load ${(turn.loadTicks / turn.machineTotal).toFixed(3)}, machine busy ${(turn.machineBusy / turn.machineTotal).toFixed(3)}`,
  );
  if (turn.failed > 0 || runs.some((r) => r.status !== 0))
    failures.push(
      `${server.name} whole machine: ${turn.failed} failed, h2load exits ${runs.map((r) => r.status).join(",")}\n${runs[0]!.out.slice(-400)}`,
    );
  return turn;
}

/** A configuration's turns as one phase: the rate their mean (turns of equal length), the rest summed. */
function wholeMachineOf(w: WholeMachineServer, turns: WholeMachineTurn[]): WholeMachine {
  const sum = (f: (t: WholeMachineTurn) => number) => turns.reduce((x, t) => x + f(t), 0);
  const ok = sum((t) => t.ok);
  const total = sum((t) => t.machineTotal);
  const perOk = (f: (t: WholeMachineTurn) => number | null, digits: number) => {
    const parts = turns.filter((t) => f(t) !== null && t.ok > 0);
    const n = parts.reduce((x, t) => x + t.ok, 0);
    return n === 0 ? null : +(parts.reduce((x, t) => x + f(t)! * t.ok, 0) / n).toFixed(digits);
  };
  return {
    workers: w.workers,
    balancing: w.balancing,
    rate: Math.round(sum((t) => t.rate) / turns.length),
    ok,
    failed: sum((t) => t.failed),
    server_share: +(sum((t) => t.serverTicks) / total).toFixed(3),
    load_share: +(sum((t) => t.loadTicks) / total).toFixed(3),
    machine_busy: +(sum((t) => t.machineBusy) / total).toFixed(3),
    server_cpu_ms_per_op: ok === 0 ? null : +(((sum((t) => t.serverTicks) / clkTck) * 1000) / ok).toFixed(3),
    db: {
      db_cpu_ms_per_op: perOk((t) => t.db.db_cpu_ms_per_op, 3),
      wal_bytes_per_op: perOk((t) => t.db.wal_bytes_per_op, 0),
      disk_write_bytes_per_op: perOk((t) => t.db.disk_write_bytes_per_op, 0),
    },
  };
}

/**
 * The whole-machine phase: every configuration (1 worker; n workers round-robin and kernel) is
 * started, then measured in turns like the sign-in comparison (TURNS rounds, every other one in
 * reverse), so a drift of the VM's speed weighs on each alike; the others are stopped (SIGSTOP) meanwhile.
 */
async function measureWholeMachines(): Promise<void> {
  const started: WholeMachineServer[] = [];
  try {
    // Several workers: both ways of spreading connections, so the choice is measured.
    for (const n of workerCounts) {
      for (const balancing of n === 1 ? (["round_robin"] as const) : (["round_robin", "kernel"] as const)) {
        log(`whole machine: starting ${n} worker${n === 1 ? "" : `s, ${balancing}`}`);
        started.push(await startWholeMachine(n, balancing));
      }
    }
    const turns = new Map<WholeMachineServer, WholeMachineTurn[]>();
    for (const w of started) w.server.pause();
    for (const { item, round } of turnOrder(started, TURNS)) {
      log(`whole machine, turn ${round + 1} of ${TURNS}: ${item.server.name}`);
      item.server.resume();
      // What its timers did while it waited (pg pools close idle connections) before the turn.
      await new Promise((resolve) => setTimeout(resolve, 200));
      await wholeMachineSignins(item);
      turns.set(item, [...(turns.get(item) ?? []), await wholeMachineTurn(item, SECONDS / TURNS)]);
      item.server.pause();
    }
    for (const w of started) w.server.resume();
    for (const w of started) {
      const m = wholeMachineOf(w, turns.get(w) ?? []);
      log(
        `  ${w.server.name}, all turns: ${m.rate}/s, server CPU ${m.server_cpu_ms_per_op} ms/op, machine busy ${m.machine_busy}`,
      );
      wholeMachine.push(m);
    }
  } finally {
    for (const w of started) await w.server.stop();
  }
}

function wholeMachineReport(): string[] {
  if (wholeMachine.length === 0) return [];
  const one = wholeMachine.find((w) => w.workers === 1);
  return [
    "",
    `#### Whole machine: the service with WORKERS=n, unpinned, load from h2load (${LOADERS} processes × ${Math.ceil(CONNECTIONS / LOADERS)} connections, HTTP/1.1 REST, ${SECONDS} s in ${TURNS} turns, the configurations in turn like the sign-in rows, h2load's first second of each unmeasured)`,
    "",
    "| workers | balancing | sign-ins ok/s | ÷ 1 worker | server CPU share | h2load CPU share | machine busy | server CPU ms/op | DB CPU ms/op | WAL B/op | failed |",
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...wholeMachine.map(
      (w) =>
        `| ${w.workers} | ${w.workers === 1 ? "" : w.balancing === "kernel" ? "kernel (SO_REUSEPORT)" : "round-robin (node:cluster)"} | ${fmt(w.rate, 0)} | ${one === undefined || one.rate === 0 ? "" : times(w.rate / one.rate)} | ${fmt(w.server_share * 100, 0)} % | ${fmt(w.load_share * 100, 0)} % | ${fmt(w.machine_busy * 100, 0)} % | ${fmt(w.server_cpu_ms_per_op, 2)} | ${fmt(w.db?.db_cpu_ms_per_op, 2)} | ${fmt(w.db?.wal_bytes_per_op, 0)} | ${w.failed} |`,
    ),
    "",
    `- shares are of the whole machine's CPU time (${nproc} cores × the run, /proc/stat); h2load's from its processes' cutime+cstime, the server's from its processes (supervisor and workers)${db === "postgresql" ? ", PostgreSQL's not in the server's" : ""}`,
    `- each h2load process sends one user's returning sign-in again and again (provider bench-reusable: the ID token is accepted more than once, so no replay marker is written); rate is h2load's, success counted from the service's /metrics (one answer for every worker)`,
  ];
}

// --- report -----------------------------------------------------------------------------------

interface Row {
  label: string;
  m: Measured | undefined;
  statements: number | string | null;
  roundTrips: number | string | null;
  vsFloor?: number | null;
  vsBetterAuth?: number | null;
}

function ratio(a: Measured | undefined, b: Measured | undefined): number | null {
  return a === undefined || b === undefined || b.rate === 0 ? null : a.rate / b.rate;
}

function buildRows(): Row[] {
  const f = results.floor;
  const b = results["better-auth"];
  const s = results.service;
  const c = counts as StatementCounts | null;
  const st = (op: keyof StatementCounts["statements"]) => (c === null ? null : c.statements[op]);
  const rt = (op: keyof StatementCounts["statements"]) =>
    c === null ? null : c.round_trips === null ? "n/a" : c.round_trips[op];
  const rows: Row[] = [];
  const add = (row: Row) => {
    if (row.m !== undefined) rows.push(row);
  };
  add({
    label: "floor: returning sign-in",
    m: f["returning"],
    statements: f["returning"]?.statements_per_op ?? null,
    roundTrips: null,
  });
  add({
    label: "floor: new-user sign-in",
    m: f["new"],
    statements: f["new"]?.statements_per_op ?? null,
    roundTrips: null,
  });
  add({
    label: "better-auth: returning sign-in",
    m: b["returning"],
    statements: b["returning"]?.statements_per_op ?? null,
    roundTrips: null,
  });
  add({
    label: "better-auth: new-user sign-in",
    m: b["new"],
    statements: b["new"]?.statements_per_op ?? null,
    roundTrips: null,
  });
  const vs = (m: Measured | undefined, kind: "returning" | "new") => ({
    vsFloor: ratio(m, f[kind]),
    vsBetterAuth: ratio(m, b[kind]),
  });
  add({
    label: "service (REST): returning sign-in",
    m: s["returning"],
    statements: st("returning_signin"),
    roundTrips: rt("returning_signin"),
    ...vs(s["returning"], "returning"),
  });
  add({
    label: "service (REST): new-user sign-in",
    m: s["new"],
    statements: st("new_signin"),
    roundTrips: rt("new_signin"),
    ...vs(s["new"], "new"),
  });
  const p = results["service-prisma"];
  add({
    label: "service, hot path on Prisma Client alone (REST): returning",
    m: p["returning"],
    statements: null,
    roundTrips: null,
    ...vs(p["returning"], "returning"),
  });
  add({
    label: "service, hot path on Prisma Client alone (REST): new user",
    m: p["new"],
    statements: null,
    roundTrips: null,
    ...vs(p["new"], "new"),
  });
  add({
    label: "service gRPC (h2c, Node client: client-bound): returning",
    m: s["grpc"],
    statements: st("returning_signin"),
    roundTrips: rt("returning_signin"),
    ...vs(s["grpc"], "returning"),
  });
  add({
    label: "service Connect (HTTP/1.1 JSON, Node client: client-bound): returning",
    m: s["connect"],
    statements: st("returning_signin"),
    roundTrips: rt("returning_signin"),
    ...vs(s["connect"], "returning"),
  });
  add({ label: "h2load, one user: REST (HTTP/1.1)", m: s["h2load-rest"], statements: null, roundTrips: null });
  add({
    label: "h2load, one user: Connect (HTTP/1.1 JSON)",
    m: s["h2load-connect"],
    statements: null,
    roundTrips: null,
    vsFloor: ratio(s["h2load-connect"], s["h2load-rest"]),
  });
  add({
    label: "h2load, one user: gRPC (h2c, 4 connections × 8 streams)",
    m: s["h2load-grpc"],
    statements: null,
    roundTrips: null,
    vsFloor: ratio(s["h2load-grpc"], s["h2load-rest"]),
  });
  add({
    label: `service soak, first ${SOAK_SLICE_SECONDS} s (REST returning, ES256 tokens minted on the fly)`,
    m: s["soak"],
    statements: null,
    roundTrips: null,
  });
  add({ label: "service: refresh", m: s["refresh"], statements: st("refresh"), roundTrips: rt("refresh") });
  add({ label: "service: GET /auth/me", m: s["me"], statements: st("me"), roundTrips: rt("me") });
  return rows;
}

const fmt = (v: number | string | null | undefined, digits = 1) =>
  v === null || v === undefined
    ? ""
    : typeof v === "string"
      ? v
      : v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const times = (v: number | null | undefined) => (v === null || v === undefined ? "" : `${v.toFixed(2)}×`);

function report(): string {
  const rows = buildRows();
  if (rows.length === 0) return [...wholeMachineReport(), ...failureLines()].join("\n");
  const lines = [
    `### ID-token sign-in: floor vs better-auth vs this service (${db === "postgresql" ? "PostgreSQL" : "SQLite"})`,
    "",
    "| operation | rate (ok/s) | p50 ms | p99 ms | non-2xx | server CPU ms/op | DB CPU ms/op | WAL B/op | disk writes B/op | RSS MiB | WAL MiB at end | statements/op | round trips/op | service ÷ floor | service ÷ better-auth |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...rows.map((r) => {
      const m = r.m!;
      const bad = m.non2xx + m.errors + m.mfa_challenges;
      const d = m.db;
      return `| ${r.label} | ${fmt(m.rate, 0)} | ${fmt(m.p50_ms, 2)} | ${fmt(m.p99_ms, 2)} | ${bad} | ${fmt(m.cpu_ms_per_op, 2)} | ${fmt(d?.db_cpu_ms_per_op, 2)} | ${fmt(d?.wal_bytes_per_op, 0)} | ${fmt(d?.disk_write_bytes_per_op, 0)} | ${fmt(m.rss_mib ?? null, 0)} | ${fmt(m.wal_mib ?? null, 1)} | ${fmt(r.statements, typeof r.statements === "number" && Number.isInteger(r.statements) ? 0 : 2)} | ${fmt(r.roundTrips, 0)} | ${times(r.vsFloor)} | ${times(r.vsBetterAuth)} |`;
    }),
    "",
    `- machine: ${nproc} CPUs (nproc), ${cpuModel}; node ${process.version}; ${pinningNote}`,
    `- load: autocannon ${CONNECTIONS} connections, keep-alive, HTTP/1.1 (gRPC/Connect: ${CONNECTIONS} calls in flight); ${SECONDS} s per phase after ${WARMUP} s warm-up; ${RETURNING_USERS} returning users; up to ${NEW_USERS} new users per "new" phase (each token once); the returning and new-user rows of the servers compared are measured in ${TURNS} turns each, the servers in order and every other round in reverse, ${+(SECONDS / TURNS).toFixed(2)} s a turn after ${TURN_WARMUP} s unmeasured, each server's turns summed (p50/p99: their mean), so that a drift of the machine's speed weighs on every server alike`,
    `- h2load rows: the same returning sign-in of one user, load from h2load (C) so the load generator is not the bottleneck; p50 column shows h2load's mean; their "service ÷ floor" column is the rate relative to h2load REST; success counted from the service's /metrics`,
    `- non-2xx counts non-2xx answers, transport errors and MFA challenges (all must be 0); rate counts 2xx answers with tokens`,
    `- statements/op: service from the in-process counting phase (onQuery hook, one request at a time, BEGIN and COMMIT included; gRPC/Connect run the same sign-in); floor and better-auth from their own statement counters under load (BEGIN/COMMIT included)`,
    `- round trips/op: ${counts !== null && (counts as StatementCounts).round_trips !== null ? "from the app's onRoundTrip hook" : "n/a on SQLite (in-process: no round trips)"}`,
    `- server CPU: /proc/<pid>/stat utime+stime of the server's processes (all threads, a supervisor's workers included) over each measured phase ÷ requests answered${db === "postgresql" ? "; PostgreSQL's CPU is the DB CPU column" : ""}`,
    db === "postgresql"
      ? `- DB CPU: utime+stime of every PostgreSQL process (the postmaster's children, from /proc) ÷ requests; WAL B/op: pg_current_wal_lsn() difference (the whole cluster's) ÷ requests, with ${pgObserver?.walSettings ?? "?"} (full_page_writes=off understates production WAL); disk writes: /proc/<pid>/io write_bytes of the server's and PostgreSQL's processes ÷ requests`
      : `- WAL B/op: SQLite WAL frames × (page size + 24) ÷ requests, frames counted from the WAL index (-shm header's mxFrame, sampled every 5 ms across restarts: a lower bound); disk writes B/op: /proc/<pid>/io write_bytes of the server's processes (pages turning dirty: WAL frames and the checkpoints' copies into the database file) ÷ requests; DB CPU is the server's own (SQLite runs in it)`,
  ];
  lines.push(...probeLines(), ...statementsReport(), ...soakReport(), ...wholeMachineReport());
  if (process.env["BENCH_SEED_DB"])
    lines.push(`- the service ran on a copy of ${process.env["BENCH_SEED_DB"]} (bench/seed.ts)`);
  const ended = rows.filter((r) => r.m!.ended_by === "count").map((r) => r.label);
  if (ended.length > 0) lines.push(`- ended by request count before ${SECONDS} s: ${ended.join("; ")}`);
  lines.push(...failureLines());
  return lines.join("\n");
}

function failureLines(): string[] {
  return failures.length === 0 ? [] : ["", "**FAILURES** (results are not valid):", ...failures.map((f) => `- ${f}`)];
}

/** pg_stat_statements of the service's returning and new-user sign-in phases. */
function statementsReport(): string[] {
  if (pgObserver === undefined) return [];
  const out = [
    "",
    "#### What a sign-in costs PostgreSQL, per statement (pg_stat_statements, the service's REST phases)",
    "",
  ];
  if (pgObserver.statementsUnavailable !== null) out.push(`- ${pgObserver.statementsUnavailable}`, "");
  for (const [label, m] of [
    ["returning sign-in", results.service["returning"]],
    ["new-user sign-in", results.service["new"]],
    ["refresh", results.service["refresh"]],
  ] as const) {
    const st = m?.db?.statements;
    if (st === undefined || st.length === 0) continue;
    out.push(
      `${label}:`,
      "",
      "| statement | calls/op | exec ms/call | plan ms/call | rows/call | WAL B/call |",
      "|---|---:|---:|---:|---:|---:|",
    );
    for (const x of st)
      out.push(
        `| \`${x.query.replace(/\|/g, "\\|")}\` | ${fmt(x.calls_per_op, 2)} | ${fmt(x.exec_ms, 3)} | ${fmt(x.plan_ms, 3)} | ${fmt(x.rows_per_call, 1)} | ${fmt(x.wal_bytes_per_call, 0)} |`,
      );
    out.push("");
  }
  return out;
}

function soakReport(): string[] {
  if (soakSlices.length === 0) return [];
  const first = soakSlices[0]!;
  const last = soakSlices.at(-1)!;
  return [
    "",
    `#### Soak: ${SOAK_SECONDS} s of returning sign-ins (tokens minted on the fly, ES256), per ${SOAK_SLICE_SECONDS} s`,
    "",
    "| at s | rate ok/s | p99 ms | RSS MiB | JS heap MiB | database MiB | non-2xx |",
    "|---:|---:|---:|---:|---:|---:|---:|",
    ...soakSlices.map(
      (x) =>
        `| ${x.at_s} | ${fmt(x.rate, 0)} | ${fmt(x.p99_ms, 2)} | ${x.rss_mib} | ${fmt(x.heap_mib, 0)} | ${fmt(x.database_mib, 1)} | ${x.bad} |`,
    ),
    "",
    `- first → last slice: rate ${fmt(first.rate, 0)} → ${fmt(last.rate, 0)}/s, RSS ${first.rss_mib} → ${last.rss_mib} MiB, JS heap ${fmt(first.heap_mib, 0)} → ${fmt(last.heap_mib, 0)} MiB, database ${fmt(first.database_mib, 1)} → ${fmt(last.database_mib, 1)} MiB (${db === "sqlite" ? "file + -wal + -shm" : "pg_database_size"}; sessions and used-token markers grow until their purge, by design)`,
    "- JS heap: nodejs_heap_size_used_bytes from the service's /metrics at the end of each slice; RSS from /proc",
  ];
}

async function cleanUp(): Promise<void> {
  for (const c of children) c.kill("SIGTERM");
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      await cleanup();
    } catch (e) {
      log(`cleanup: ${String(e)}`);
    }
  }
}

let exitCode = 0;
const onSignal = () => {
  log("interrupted: stopping servers, dropping databases");
  void cleanUp().finally(() => process.exit(130));
};
process.once("SIGINT", onSignal);
process.once("SIGTERM", onSignal);
try {
  await main();
} catch (e) {
  exitCode = 1;
  log(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
} finally {
  await cleanUp();
}

const table = report();
process.stdout.write(`${table}\n`);
const outFile =
  flags.out ??
  join(
    ROOT,
    "bench/results",
    `${started.toISOString().replace(/[:.]/g, "-")}-${db}${flags.only === undefined ? "" : `-${targets.join("+")}`}.json`,
  );
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(
  outFile,
  `${JSON.stringify(
    {
      started: started.toISOString(),
      database: db,
      targets,
      machine: { nproc, cpu_model: cpuModel, node: process.version, clk_tck: clkTck, pinned, pinning: pinningNote },
      settings: {
        seconds: SECONDS,
        warmup_seconds: WARMUP,
        connections: CONNECTIONS,
        returning_users: RETURNING_USERS,
        new_users: NEW_USERS,
        max_requests: MAX_REQUESTS,
      },
      statement_counts: counts,
      results,
      soak: soakSlices,
      whole_machine: wholeMachine,
      speed_probes: probes,
      rows: buildRows().map((r) => ({
        label: r.label,
        statements_per_op: r.statements,
        round_trips_per_op: r.roundTrips,
        service_vs_floor: r.vsFloor ?? null,
        service_vs_better_auth: r.vsBetterAuth ?? null,
        ...r.m,
      })),
      failures,
      table,
    },
    null,
    2,
  )}\n`,
);
log(`results: ${outFile}`);
if (failures.length > 0) exitCode = 1;
process.exit(exitCode);
