/**
 * `npm run bench`: a side-by-side comparison of ID-token sign-in, reproducible on any machine.
 *
 *   node bench/run.ts [--db sqlite|postgresql] [--only floor,better-auth,service] [--out FILE]
 *
 *   BENCH_SECONDS          seconds per measured phase (default 10)
 *   BENCH_WARMUP_SECONDS   unmeasured load before the measured phases of each server (default 2)
 *   BENCH_DATABASE_URL     with --db postgresql: a server where we may CREATE DATABASE (a fresh
 *                          database per server and run, dropped at the end)
 *   BENCH_RETURNING_USERS  returning users, signed in once during warm-up (default 1000)
 *   BENCH_NEW_USERS        cap on new users per "new" phase (default 20000; also <= 3000/s)
 *   BENCH_MAX_REQUESTS     cap on requests per phase (default 500000)
 *
 * One after the other on the same machine, each server runs alone, pinned to core 0
 * (`taskset -c 0`), while the load comes from a child pinned to core 1 (bench/load.ts):
 *
 *   floor        bench/floor.ts: node:http + jose + better-sqlite3/pg, the same essential work
 *   better-auth  bench/better-auth-server.ts: its ID-token social sign-in
 *   service      `node src/main.ts --config FILE`, production mode (NODE_ENV=production)
 *
 * All verify the same pre-minted RS256 ID tokens of one bench issuer (bench/issuer.ts, in this
 * process). Per server: sign each returning user in once, warm up, then measure returning
 * sign-ins and new users' first sign-ins (each new token used once); for the service also
 * gRPC (h2c) and Connect (HTTP/1.1 JSON) sign-ins, refresh (rotating single-use tokens) and
 * GET /auth/me. Server CPU per operation comes from /proc/<pid>/stat (utime + stime) around
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
  },
});
const db = flags.db as "sqlite" | "postgresql";
if (db !== "sqlite" && db !== "postgresql") throw new Error(`--db must be sqlite or postgresql, not ${flags.db}`);
const only = (flags.only ?? TARGETS.join(",")).split(",").map((s) => s.trim()).filter((s) => s !== "");
for (const t of only) if (!(TARGETS as readonly string[]).includes(t)) throw new Error(`--only: unknown ${t} (use ${TARGETS.join(",")})`);
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
const NEW_USERS = Math.max(CONNECTIONS, Math.min(Math.floor(num("BENCH_NEW_USERS", 20_000)), Math.ceil(SECONDS * 3000)));
const MAX_REQUESTS = Math.floor(num("BENCH_MAX_REQUESTS", 500_000));
const SOAK_SECONDS = Number(process.env["BENCH_SOAK_SECONDS"] ?? 0);
/**
 * Returning sign-ins need a token each (a token signs in once): enough for every returning phase
 * of one server (warm-up, measured, gRPC and Connect, soak) at up to 2,500/s.
 */
const RETURNING_TOKENS = Math.floor(
  num("BENCH_RETURNING_TOKENS", RETURNING_USERS + 2500 * (WARMUP + SECONDS + 2 * (Math.min(WARMUP, 1) + SECONDS) + SOAK_SECONDS)),
);
const SHORT_WARMUP = Math.min(WARMUP, 1);
const adminUrl = process.env["BENCH_DATABASE_URL"];
if (db === "postgresql" && (adminUrl === undefined || adminUrl === "")) {
  throw new Error("--db postgresql needs BENCH_DATABASE_URL=postgresql://user@host:port/db (a server where we may CREATE DATABASE)");
}

// --- machine, pinning ------------------------------------------------------------------------

const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
const nproc = Number(spawnSync("nproc", { encoding: "utf8" }).stdout?.trim() || cpus().length);
const cpuModel = /^model name\s*:\s*(.+)$/m.exec(safeRead("/proc/cpuinfo"))?.[1]?.trim() ?? cpus()[0]?.model ?? "unknown";
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

function safeRead(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

/** utime + stime of a process (all its threads), in clock ticks. */
/** Resident memory of a process, MiB. */
function rssMiB(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(safeRead(`/proc/${pid}/status`))?.[1];
  return kb === undefined ? 0 : Math.round(Number(kb) / 1024);
}

/** Bytes of a file, 0 when it does not exist. */
function fileBytes(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** The SQLite database, its WAL and wal-index (-shm), MiB (issue 17: a WAL that never restarted). */
function sqliteFilesMiB(dbFile: string): { db_mib: number; wal_mib: number; shm_mib: number } {
  const mib = (file: string) => +(fileBytes(file) / 1024 / 1024).toFixed(1);
  return { db_mib: mib(dbFile), wal_mib: mib(`${dbFile}-wal`), shm_mib: mib(`${dbFile}-shm`) };
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // fields[0] is field 3 (state)
  return Number(fields[11]) + Number(fields[12]); // fields 14 (utime) and 15 (stime)
}

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
  url: string;
  pid: number;
  /** SQLite: the server's database file (its -wal and -shm are reported after each phase). */
  sqliteFile?: string;
  output(): string;
  stop(): Promise<void>;
}

function childEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { PATH: process.env["PATH"] ?? "", NODE_ENV: "production", HOST: "127.0.0.1" };
  for (const k of ["HOME", "TMPDIR", "LANG"]) if (process.env[k] !== undefined) env[k] = process.env[k]!;
  return { ...env, ...extra };
}

/** Starts a server pinned to core 0 on a free port and waits until `readyPath` answers 200. */
async function startServer(name: string, args: string[], env: Record<string, string>, readyPath: string, sqliteFile?: string): Promise<RunningServer> {
  const port = await freePort();
  const argv = pin(0, [process.execPath, ...args]);
  const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env: childEnv({ ...env, PORT: String(port) }), stdio: ["ignore", "pipe", "pipe"] });
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
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${output}`);
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
  if (exe !== process.execPath) log(`warning: pid ${child.pid} of ${name} runs "${exe}", not node: CPU figures may be wrong`);
  return {
    name,
    url,
    pid: child.pid!,
    ...(sqliteFile === undefined || db !== "sqlite" ? {} : { sqliteFile }),
    output: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
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
  const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env: childEnv({}), stdio: ["ignore", "inherit", "inherit", "ipc"] });
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
  /** The server's resident memory at the end of the phase, MiB. */
  rss_mib?: number;
  /** SQLite: the database, -wal and -shm files at the end of the phase, MiB. */
  db_mib?: number;
  wal_mib?: number;
  shm_mib?: number;
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

async function warm(load: ReturnType<typeof startLoad>, server: RunningServer, label: string, command: Command): Promise<void> {
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
  const t0 = cpuTicks(server.pid);
  const r = (await load.send(command)) as PhaseResult;
  const t1 = cpuTicks(server.pid);
  const s1 = countStatements ? await statementCount(server) : null;
  const done = r.requests;
  const m: Measured = {
    ...r,
    cpu_ms_per_op: done === 0 ? null : +((((t1 - t0) / clkTck) * 1000) / done).toFixed(3),
    statements_per_op: s0 === null || s1 === null || s1.signins === s0.signins ? null : +((s1.statements - s0.statements) / (s1.signins - s0.signins)).toFixed(2),
    ended_by: r.requests >= command.maxRequests ? "count" : "time",
    rss_mib: rssMiB(server.pid),
    ...(server.sqliteFile === undefined ? {} : sqliteFilesMiB(server.sqliteFile)),
  };
  const files = m.wal_mib === undefined ? "" : `, db ${m.db_mib} MiB, wal ${m.wal_mib} MiB, shm ${m.shm_mib} MiB`;
  log(`  ${server.name} ${label}: ${m.rate}/s, p50 ${m.p50_ms} ms, p99 ${m.p99_ms} ms, ${m.ok} ok, non-2xx ${m.non2xx}, cpu ${m.cpu_ms_per_op} ms/op, rss ${m.rss_mib} MiB${files}`);
  checkPhase(`${server.name} ${label}`, r);
  return m;
}

type Results = Partial<Record<string, Measured>>;

/** One protocol of the h2load comparison (bench/h2load.ts), on core 1, the server on core 0. */
async function measureH2load(server: RunningServer, protocol: Protocol, token: { sub: string; token: string }): Promise<Measured> {
  const file = join(work, `body-${protocol}`);
  writeFileSync(file, bodyFor(protocol, token.token, `device-${token.sub}`));
  // One sign-in first, while this process can still answer: it fetches the provider's keys from
  // the bench issuer, which runs in this process and is frozen while h2load runs (spawnSync).
  const first = await fetch(`${server.url}/auth/id-token/signin`, { method: "POST", headers: { "content-type": "application/json" }, body: bodyFor("rest", token.token, `device-${token.sub}`) });
  if (first.status !== 200) throw new Error(`h2load ${protocol}: the first sign-in answered ${first.status} ${await first.text()}`);
  const before = await signinOutcomes(server.url);
  const t0 = cpuTicks(server.pid);
  const argv = pin(1, ["h2load", ...h2loadArgs(protocol, server.url, file, SECONDS, CONNECTIONS)]);
  const out = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: (SECONDS + 60) * 1000 });
  const t1 = cpuTicks(server.pid);
  const after = await signinOutcomes(server.url);
  const parsed = parseH2load(out.stdout ?? "");
  const ok = (after["ok"] ?? 0) - (before["ok"] ?? 0);
  const failed = Object.keys(after).filter((k) => k !== "ok").reduce((n, k) => n + (after[k] ?? 0) - (before[k] ?? 0), 0);
  // The measured window excludes h2load's warm-up second; the server's CPU covers both.
  const m: Measured = {
    requests: parsed.done, ok: Math.min(ok, parsed.done), non2xx: failed + (protocol === "grpc" ? 0 : parsed.done - parsed.status2xx), errors: 0,
    mfa_challenges: 0, elapsed_s: SECONDS, rate: Math.round(parsed.rate), p50_ms: parsed.meanMs, p99_ms: null, status_counts: {},
    cpu_ms_per_op: ok === 0 ? null : +((((t1 - t0) / clkTck) * 1000) / ok).toFixed(3), statements_per_op: null, ended_by: "time",
    ...(server.sqliteFile === undefined ? {} : sqliteFilesMiB(server.sqliteFile)),
  };
  log(`  ${server.name} h2load ${protocol}: ${m.rate}/s, mean ${m.p50_ms} ms, ${ok} ok, failed ${failed}, cpu ${m.cpu_ms_per_op} ms/op`);
  if (m.non2xx > 0 || out.status !== 0) failures.push(`${server.name} h2load ${protocol}: ${m.non2xx} failed, exit ${out.status}\n${(out.stdout ?? "").slice(-400)}${out.stderr ?? ""}`);
  return m;
}

async function benchSigninServer(
  load: ReturnType<typeof startLoad>,
  server: RunningServer,
  opts: { path: string; style: "rest" | "better-auth"; collect: boolean; countStatements: boolean },
): Promise<Results> {
  const base = { type: "http-signin" as const, url: server.url, path: opts.path, style: opts.style };
  await load.send({ type: "reset" });
  // Warm-up: each returning user signs in once (a first sign-in that creates them), then load.
  await warm(load, server, `first sign-in of ${RETURNING_USERS} returning users`, {
    ...base, set: "returning-once", seconds: 300, maxRequests: RETURNING_USERS, collect: opts.collect,
  });
  await warm(load, server, `warm-up ${WARMUP} s`, { ...base, set: "returning", seconds: WARMUP, maxRequests: MAX_REQUESTS });
  const returning = await measure(load, server, "returning sign-in", { ...base, set: "returning", seconds: SECONDS, maxRequests: MAX_REQUESTS }, opts.countStatements);
  const fresh = await measure(load, server, "new-user sign-in", { ...base, set: "new", seconds: SECONDS, maxRequests: NEW_USERS }, opts.countStatements);
  return { returning, new: fresh };
}

// --- main -------------------------------------------------------------------------------------

let soakReport: string[] = [];
const results: Record<Target, Results> = { floor: {}, "better-auth": {}, service: {}, "service-prisma": {} };
let counts: StatementCounts | null = null;
const started = new Date();
const issuer = await startBenchIssuer();
cleanups.push(() => issuer.close());
const work = mkdtempSync(join(tmpdir(), "identity-bench-"));
cleanups.push(() => rmSync(work, { recursive: true, force: true }));

async function main(): Promise<void> {
  log(`machine: ${nproc} CPUs, ${cpuModel}, node ${process.version}; ${pinningNote}`);
  log(`minting ${RETURNING_TOKENS} ID tokens of ${RETURNING_USERS} returning users + ${NEW_USERS} of new users`);
  const runId = randomBytes(3).toString("hex");
  // The first RETURNING_USERS are one per user (their first sign-in), then round the users again.
  const returning = await issuer.mintMany(Array.from({ length: RETURNING_TOKENS }, (_, i) => `ret-${runId}-${i % RETURNING_USERS}`));
  const fresh = await issuer.mintMany(Array.from({ length: NEW_USERS }, (_, i) => `new-${runId}-${i}`));
  const tokensFile = join(work, "tokens.json");
  writeFileSync(tokensFile, JSON.stringify({ returning, fresh }));

  if (targets.includes("service")) {
    log("counting statements per operation (in-process, no load)");
    const env: Record<string, string> = db === "postgresql" ? { BENCH_DATABASE_URL: await freshDatabase("count") } : {};
    const r = spawnSync(process.execPath, [join(ROOT, "bench/count-statements.ts"), "--db", db], {
      cwd: ROOT, env: childEnv(env), encoding: "utf8", timeout: 120_000,
    });
    if (r.status !== 0) throw new Error(`counting phase failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
    counts = JSON.parse(r.stdout.trim().split("\n").pop()!) as StatementCounts;
  }

  const load = startLoad();
  cleanups.push(() => load.close());
  await load.send({ type: "tokens", file: tokensFile });

  for (const target of targets) {
    const dataDir = join(work, target);
    mkdirSync(dataDir, { recursive: true });
    const dbEnv: Record<string, string> = db === "postgresql" ? { BENCH_DATABASE_URL: await freshDatabase(target) } : {};
    log(`${target}: starting`);
    if (target === "floor") {
      const server = await startServer("floor", ["bench/floor.ts", "--issuer", issuer.issuer, "--db", db, "--data-dir", dataDir], dbEnv, "/healthz", join(dataDir, "floor.db"));
      try {
        results.floor = await benchSigninServer(load, server, { path: "/auth/id-token/signin", style: "rest", collect: false, countStatements: true });
      } finally {
        await server.stop();
      }
    } else if (target === "better-auth") {
      const server = await startServer("better-auth", ["bench/better-auth-server.ts", "--issuer", issuer.issuer, "--db", db, "--data-dir", dataDir], dbEnv, "/healthz", join(dataDir, "better-auth.db"));
      try {
        results["better-auth"] = await benchSigninServer(load, server, { path: "/api/auth/sign-in/social", style: "better-auth", collect: false, countStatements: true });
      } finally {
        await server.stop();
      }
    } else if (target === "service-prisma") {
      // The same design (one read, one write per sign-in) through Prisma Client alone: what the
      // driver path buys.
      const config = serviceConfig({ issuer: issuer.issuer, dataDir: join(dataDir, "data"), databaseUrl: dbEnv["BENCH_DATABASE_URL"] });
      const file = writeServiceConfig(dataDir, { ...config, database: { ...(config["database"] as object | undefined), hot_path: "prisma" } });
      const server = await startServer("service-prisma", ["src/main.ts", "--config", file], {}, "/readyz", join(dataDir, "data", "identity.db"));
      try {
        results["service-prisma"] = await benchSigninServer(load, server, { path: "/auth/id-token/signin", style: "rest", collect: false, countStatements: false });
      } finally {
        await server.stop();
      }
    } else {
      const config = serviceConfig({ issuer: issuer.issuer, dataDir: join(dataDir, "data"), databaseUrl: dbEnv["BENCH_DATABASE_URL"] });
      const file = writeServiceConfig(dataDir, config);
      // BENCH_SEED_DB: a SQLite file made by bench/seed.ts (e.g. 1,000,000 users, 5,000,000 audit
      // rows): the service starts on a copy of it, to show the figures do not depend on size.
      const seed = process.env["BENCH_SEED_DB"];
      if (seed !== undefined && seed !== "" && db === "sqlite") {
        mkdirSync(join(dataDir, "data"), { recursive: true });
        cpSync(seed, join(dataDir, "data", "identity.db"));
        log(`service: on a copy of ${seed}`);
      }
      // BENCH_SERVICE_NODE_ARGS: e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the service.
      const nodeArgs = (process.env["BENCH_SERVICE_NODE_ARGS"] ?? "").split(" ").filter((a) => a !== "");
      const server = await startServer("service", [...nodeArgs, "src/main.ts", "--config", file], {}, "/readyz", join(dataDir, "data", "identity.db"));
      try {
        const r = await benchSigninServer(load, server, { path: "/auth/id-token/signin", style: "rest", collect: true, countStatements: false });
        for (const protocol of ["grpc", "connect"] as const) {
          const base = { type: "rpc-signin" as const, url: server.url, protocol };
          await warm(load, server, `${protocol} warm-up`, { ...base, seconds: SHORT_WARMUP, maxRequests: MAX_REQUESTS });
          r[protocol] = await measure(load, server, `${protocol} returning sign-in`, { ...base, seconds: SECONDS, maxRequests: MAX_REQUESTS }, false);
        }
        if (db === "postgresql") {
          // One user's sign-ins all update that user's row: on PostgreSQL its row lock
          // serializes them, which would measure the lock, not the protocol.
          log("protocol comparison (h2load, one user) runs on SQLite only");
        } else if (h2loadAvailable()) {
          for (const protocol of ["rest", "connect", "grpc"] as const) r[`h2load-${protocol}`] = await measureH2load(server, protocol, returning[0]!);
        } else {
          log("h2load (Debian package nghttp2-client) is missing: no protocol comparison");
        }
        await warm(load, server, "refresh warm-up", { type: "http-refresh", url: server.url, seconds: SHORT_WARMUP, maxRequests: MAX_REQUESTS });
        r["refresh"] = await measure(load, server, "refresh", { type: "http-refresh", url: server.url, seconds: SECONDS, maxRequests: MAX_REQUESTS }, false);
        await warm(load, server, "me warm-up", { type: "http-me", url: server.url, seconds: SHORT_WARMUP, maxRequests: MAX_REQUESTS });
        r["me"] = await measure(load, server, "GET /auth/me", { type: "http-me", url: server.url, seconds: SECONDS, maxRequests: MAX_REQUESTS }, false);
        // BENCH_SOAK_SECONDS: returning sign-ins for that long in 10 s slices, memory after each.
        const soak = Number(process.env["BENCH_SOAK_SECONDS"] ?? 0);
        if (soak > 0) {
          const base = { type: "http-signin" as const, url: server.url, path: "/auth/id-token/signin", style: "rest" as const, set: "returning" as const };
          const slices: Measured[] = [];
          for (let left = soak; left > 0; left -= 10) {
            slices.push(await measure(load, server, `soak ${soak - left + Math.min(10, left)} s`, { ...base, seconds: Math.min(10, left), maxRequests: MAX_REQUESTS }, false));
          }
          soakReport = slices.map((m) => `${m.rate}/s ${m.rss_mib} MiB`);
          r["soak-first"] = slices[0];
          r["soak-last"] = slices.at(-1);
        }
        results.service = r;
        const warnings = server.output().split("\n").filter((l) => l.includes('"level":"error"'));
        if (warnings.length > 0) log(`service logged ${warnings.length} error lines, e.g. ${warnings[0]}`);
      } finally {
        await server.stop();
      }
    }
  }
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
  const rt = (op: keyof StatementCounts["statements"]) => (c === null ? null : c.round_trips === null ? "n/a" : c.round_trips[op]);
  const rows: Row[] = [];
  const add = (row: Row) => {
    if (row.m !== undefined) rows.push(row);
  };
  add({ label: "floor: returning sign-in", m: f["returning"], statements: f["returning"]?.statements_per_op ?? null, roundTrips: null });
  add({ label: "floor: new-user sign-in", m: f["new"], statements: f["new"]?.statements_per_op ?? null, roundTrips: null });
  add({ label: "better-auth: returning sign-in", m: b["returning"], statements: b["returning"]?.statements_per_op ?? null, roundTrips: null });
  add({ label: "better-auth: new-user sign-in", m: b["new"], statements: b["new"]?.statements_per_op ?? null, roundTrips: null });
  const vs = (m: Measured | undefined, kind: "returning" | "new") => ({ vsFloor: ratio(m, f[kind]), vsBetterAuth: ratio(m, b[kind]) });
  add({ label: "service (REST): returning sign-in", m: s["returning"], statements: st("returning_signin"), roundTrips: rt("returning_signin"), ...vs(s["returning"], "returning") });
  add({ label: "service (REST): new-user sign-in", m: s["new"], statements: st("new_signin"), roundTrips: rt("new_signin"), ...vs(s["new"], "new") });
  const p = results["service-prisma"];
  add({ label: "service, hot path on Prisma Client alone (REST): returning", m: p["returning"], statements: null, roundTrips: null, ...vs(p["returning"], "returning") });
  add({ label: "service, hot path on Prisma Client alone (REST): new user", m: p["new"], statements: null, roundTrips: null, ...vs(p["new"], "new") });
  add({ label: "service gRPC (h2c, Node client: client-bound): returning", m: s["grpc"], statements: st("returning_signin"), roundTrips: rt("returning_signin"), ...vs(s["grpc"], "returning") });
  add({ label: "service Connect (HTTP/1.1 JSON, Node client: client-bound): returning", m: s["connect"], statements: st("returning_signin"), roundTrips: rt("returning_signin"), ...vs(s["connect"], "returning") });
  add({ label: "h2load, one user: REST (HTTP/1.1)", m: s["h2load-rest"], statements: null, roundTrips: null });
  add({ label: "h2load, one user: Connect (HTTP/1.1 JSON)", m: s["h2load-connect"], statements: null, roundTrips: null, vsFloor: ratio(s["h2load-connect"], s["h2load-rest"]) });
  add({ label: "h2load, one user: gRPC (h2c, 4 connections × 8 streams)", m: s["h2load-grpc"], statements: null, roundTrips: null, vsFloor: ratio(s["h2load-grpc"], s["h2load-rest"]) });
  add({ label: "service soak, first 10 s (REST returning)", m: s["soak-first"], statements: null, roundTrips: null });
  add({ label: "service soak, last 10 s (REST returning)", m: s["soak-last"], statements: null, roundTrips: null });
  add({ label: "service: refresh", m: s["refresh"], statements: st("refresh"), roundTrips: rt("refresh") });
  add({ label: "service: GET /auth/me", m: s["me"], statements: st("me"), roundTrips: rt("me") });
  return rows;
}

const fmt = (v: number | string | null | undefined, digits = 1) =>
  v === null || v === undefined ? "" : typeof v === "string" ? v : v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const times = (v: number | null | undefined) => (v === null || v === undefined ? "" : `${v.toFixed(2)}×`);

function report(): string {
  const rows = buildRows();
  const lines = [
    `### ID-token sign-in: floor vs better-auth vs this service (${db === "postgresql" ? "PostgreSQL" : "SQLite"})`,
    "",
    "| operation | rate (ok/s) | p50 ms | p99 ms | non-2xx | server CPU ms/op | RSS MiB | WAL MiB at end | statements/op | round trips/op | service ÷ floor | service ÷ better-auth |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...rows.map((r) => {
      const m = r.m!;
      const bad = m.non2xx + m.errors + m.mfa_challenges;
      return `| ${r.label} | ${fmt(m.rate, 0)} | ${fmt(m.p50_ms, 2)} | ${fmt(m.p99_ms, 2)} | ${bad} | ${fmt(m.cpu_ms_per_op, 2)} | ${fmt(m.rss_mib ?? null, 0)} | ${fmt(m.wal_mib ?? null, 1)} | ${fmt(r.statements, typeof r.statements === "number" && Number.isInteger(r.statements) ? 0 : 2)} | ${fmt(r.roundTrips, 0)} | ${times(r.vsFloor)} | ${times(r.vsBetterAuth)} |`;
    }),
    "",
    `- machine: ${nproc} CPUs (nproc), ${cpuModel}; node ${process.version}; ${pinningNote}`,
    `- load: autocannon ${CONNECTIONS} connections, keep-alive, HTTP/1.1 (gRPC/Connect: ${CONNECTIONS} calls in flight); ${SECONDS} s per phase after ${WARMUP} s warm-up; ${RETURNING_USERS} returning users; up to ${NEW_USERS} new users per "new" phase (each token once)`,
    `- h2load rows: the same returning sign-in of one user, load from h2load (C) so the load generator is not the bottleneck; p50 column shows h2load's mean; their "service ÷ floor" column is the rate relative to h2load REST; success counted from the service's /metrics`,
    `- non-2xx counts non-2xx answers, transport errors and MFA challenges (all must be 0); rate counts 2xx answers with tokens`,
    `- statements/op: service from the in-process counting phase (onQuery hook, one request at a time, BEGIN and COMMIT included; gRPC/Connect run the same sign-in); floor and better-auth from their own statement counters under load (BEGIN/COMMIT included)`,
    `- round trips/op: ${counts !== null && (counts as StatementCounts).round_trips !== null ? "from the app's onRoundTrip hook" : "n/a on SQLite (in-process: no round trips)"}`,
    ...(db === "sqlite" ? ["- WAL MiB at end: the size of the server's SQLite -wal file when the phase ended (the JSON also has the database and -shm sizes)"] : []),
    `- server CPU: /proc/<pid>/stat utime+stime of the server process (all threads) over each measured phase ÷ requests answered${db === "postgresql" ? "; PostgreSQL's own CPU is not included" : ""}`,
  ];
  if (soakReport.length > 0) lines.push(`- soak (10 s slices, rate and RSS at the end of each): ${soakReport.join(" → ")}`);
  if (process.env["BENCH_SEED_DB"]) lines.push(`- the service ran on a copy of ${process.env["BENCH_SEED_DB"]} (bench/seed.ts)`);
  const ended = rows.filter((r) => r.m!.ended_by === "count").map((r) => r.label);
  if (ended.length > 0) lines.push(`- ended by request count before ${SECONDS} s: ${ended.join("; ")}`);
  if (failures.length > 0) lines.push("", "**FAILURES** (results are not valid):", ...failures.map((f) => `- ${f}`));
  return lines.join("\n");
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
  flags.out ?? join(ROOT, "bench/results", `${started.toISOString().replace(/[:.]/g, "-")}-${db}${flags.only === undefined ? "" : `-${targets.join("+")}`}.json`);
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(
  outFile,
  `${JSON.stringify(
    {
      started: started.toISOString(),
      database: db,
      targets,
      machine: { nproc, cpu_model: cpuModel, node: process.version, clk_tck: clkTck, pinned, pinning: pinningNote },
      settings: { seconds: SECONDS, warmup_seconds: WARMUP, connections: CONNECTIONS, returning_users: RETURNING_USERS, new_users: NEW_USERS, max_requests: MAX_REQUESTS },
      statement_counts: counts,
      results,
      rows: buildRows().map((r) => ({ label: r.label, statements_per_op: r.statements, round_trips_per_op: r.roundTrips, service_vs_floor: r.vsFloor ?? null, service_vs_better_auth: r.vsBetterAuth ?? null, ...r.m })),
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
