/**
 * Sign-in benchmark: `npm run bench` (SQLite) or `BENCH_DATABASE_URL=postgresql://… npm run bench`.
 *
 * Runs the real service in-process on port 0 with the dev issuer, then:
 *  - counts SQL statements per sign-in (first sign-in of a new user, and a returning user), and
 *    per refresh, through Prisma's query events;
 *  - measures throughput and latency of REST sign-ins over HTTP/1.1 keep-alive at a fixed
 *    concurrency, returning users (the hot path).
 * Crypto per sign-in is fixed by design: 1 RS256/ES256 signature verification (the ID token),
 * 1 ES256 signature (the access token), 2 SHA-256 (refresh token), 48 random bytes.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp } from "../src/app.ts";
import { loadConfig } from "../src/config/load.ts";
import { silentLogger } from "../src/logger.ts";

const USERS = Number(process.env["BENCH_USERS"] ?? 200);
const REQUESTS = Number(process.env["BENCH_REQUESTS"] ?? 4000);
const CONCURRENCY = Number(process.env["BENCH_CONCURRENCY"] ?? 32);

const dir = mkdtempSync(join(tmpdir(), "identity-bench-"));
const url = process.env["BENCH_DATABASE_URL"] ?? `file:${join(dir, "bench.db")}`;
let statements = 0;
const config = loadConfig({
  env: {},
  overrides: { dev: true, data_dir: dir, "server.port": 0, "database.url": url, "tokens.key_encryption_key": Buffer.alloc(32, 1).toString("base64"), "database.pool_size": 20 },
});
const trace = process.env["BENCH_TRACE"] === "1";
const app = await createApp(config, silentLogger, { onQuery: (sql) => { statements++; if (trace) console.error(sql.slice(0, 160)); } });
const server = await app.listen();

const json = { "content-type": "application/json" };
async function mint(sub: string): Promise<string> {
  const r = await fetch(`${server.url}/dev/oidc/token`, { method: "POST", headers: json, body: JSON.stringify({ sub, email: `${sub}@bench.test` }) });
  return ((await r.json()) as { id_token: string }).id_token;
}
async function signin(idToken: string): Promise<{ status: number; body: { refresh_token?: string } }> {
  const r = await fetch(`${server.url}/auth/id-token/signin`, { method: "POST", headers: json, body: JSON.stringify({ id_token: idToken, provider: "dev" }) });
  return { status: r.status, body: (await r.json()) as { refresh_token?: string } };
}

const tokens = await Promise.all(Array.from({ length: USERS }, (_, i) => mint(`bench-${i}`)));

// Statements per operation (one at a time, so the count is exact).
statements = 0;
const first = await signin(tokens[0]!);
const firstCount = statements;
statements = 0;
await signin(tokens[0]!);
const returningCount = statements;
statements = 0;
await fetch(`${server.url}/auth/token/refresh`, { method: "POST", headers: json, body: JSON.stringify({ refresh_token: first.body.refresh_token }) });
const refreshCount = statements;

// Warm every user (first sign-ins), then measure returning sign-ins.
await Promise.all(tokens.map((t) => signin(t)));
const latencies: number[] = [];
let failures = 0;
let next = 0;
statements = 0;
const started = performance.now();
await Promise.all(
  Array.from({ length: CONCURRENCY }, async () => {
    while (next < REQUESTS) {
      const token = tokens[next++ % USERS]!;
      const t0 = performance.now();
      const r = await signin(token);
      latencies.push(performance.now() - t0);
      if (r.status !== 200) failures++;
    }
  }),
);
const seconds = (performance.now() - started) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]!.toFixed(2);

console.log(
  JSON.stringify(
    {
      database: app.database.dialect,
      node: process.version,
      sql_statements: { first_signin: firstCount, returning_signin: returningCount, refresh: refreshCount, per_signin_under_load: +(statements / REQUESTS).toFixed(2) },
      crypto_per_signin: { signature_verifications: 1, es256_signatures: 1, sha256: 2 },
      load: { requests: REQUESTS, concurrency: CONCURRENCY, failures, signins_per_second: Math.round(REQUESTS / seconds), p50_ms: pct(50), p95_ms: pct(95), p99_ms: pct(99) },
    },
    null,
    2,
  ),
);
await app.close();
rmSync(dir, { recursive: true, force: true });
process.exit(failures === 0 ? 0 : 1);
