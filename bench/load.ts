/**
 * The load driver: a child of bench/run.ts, started pinned to its own core (`taskset -c 1`), with
 * an IPC channel. Each message is one phase against one server; the answer is its result.
 *
 * HTTP phases use autocannon programmatically: 32 connections, keep-alive, HTTP/1.1, no
 * pipelining, every request built by `setupRequest` with its own body (the next ID token, never
 * one used before on that server; the next refresh token; the next access token). A phase ends at its request count or its time
 * bound, whichever comes first. gRPC (h2c) and Connect (HTTP/1.1, JSON) phases run 32 concurrent
 * in-flight calls of the generated client, bounded the same way.
 *
 * Rate = 2xx answers / seconds from the phase's start to its last answer. Latencies are per
 * successful request (ms, p50/p99 from all of them, not sampled).
 */
import { readFileSync } from "node:fs";
import { Agent } from "node:http";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import autocannon from "autocannon";
import { AuthService } from "../gen/pb/identity/v1/auth_service_pb.ts";
import { createSoakMinter, type MintedToken } from "./issuer.ts";
import { SOAK_PROVIDER } from "./service-config.ts";
import { type Command, CONNECTIONS, type PhaseResult, type SigninStyle } from "./protocol.ts";

interface Tokens {
  returning: MintedToken[];
  fresh: MintedToken[];
}

let tokens: Tokens = { returning: [], fresh: [] };
/** Refresh tokens not used yet (single use: each refresh answer brings the next one). */
let refreshPool: string[] = [];
let accessTokens: string[] = [];

const deviceIdOf = (sub: string) => `device-${sub}`;

/** Tokens minted per request (`set: "minted"`): the minter and the subjects it cycles through. */
let minter: { mint: (sub: string) => string; prefix: string; count: number; next: number } | undefined;

function mintedBody(): string {
  if (minter === undefined) throw new Error("no minter: send a minter command first");
  const sub = `${minter.prefix}${minter.next++ % minter.count}`;
  return JSON.stringify({ id_token: minter.mint(sub), provider: SOAK_PROVIDER, device_id: deviceIdOf(sub) });
}

function bodyOf(style: SigninStyle, t: MintedToken): string {
  return style === "better-auth"
    ? JSON.stringify({ provider: "google", idToken: { token: t.token } })
    : JSON.stringify({ id_token: t.token, provider: "bench", device_id: deviceIdOf(t.sub) });
}

function percentile(sorted: Float64Array, p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

class Recorder {
  latencies: number[] = [];
  requests = 0;
  ok = 0;
  non2xx = 0;
  errors = 0;
  mfa = 0;
  statusCounts: Record<string, number> = {};
  firstFailure: string | undefined;
  readonly started = performance.now();
  last = this.started;

  answer(status: number | string, ms: number, good: boolean): void {
    this.requests++;
    this.last = performance.now();
    this.statusCounts[String(status)] = (this.statusCounts[String(status)] ?? 0) + 1;
    if (good) {
      this.ok++;
      this.latencies.push(ms);
    }
  }

  failure(what: string): void {
    this.firstFailure ??= what.slice(0, 400);
  }

  result(): PhaseResult {
    const sorted = Float64Array.from(this.latencies).sort();
    const elapsed = Math.max(1e-3, (this.last - this.started) / 1000);
    return {
      requests: this.requests + this.errors,
      ok: this.ok,
      non2xx: this.non2xx,
      errors: this.errors,
      mfa_challenges: this.mfa,
      elapsed_s: +elapsed.toFixed(3),
      rate: +(this.ok / elapsed).toFixed(1),
      p50_ms: round2(percentile(sorted, 50)),
      p99_ms: round2(percentile(sorted, 99)),
      status_counts: this.statusCounts,
      ...(this.firstFailure === undefined ? {} : { first_failure: this.firstFailure }),
    };
  }
}

const round2 = (v: number | null) => (v === null ? null : Math.round(v * 100) / 100);

/** One autocannon run; `next` builds each request, `seen` sees each answer's status and body. */
function cannon(options: {
  url: string;
  method: "GET" | "POST";
  path: string;
  seconds: number;
  amount: number;
  next: () => { body?: string; headers?: Record<string, string> };
  seen?: (status: number, body: string) => void;
  /** Whether a 2xx answer is a success (default: yes). */
  good?: (body: string) => boolean;
}): Promise<PhaseResult> {
  const rec = new Recorder();
  // Latency and status come from autocannon's per-response event; the body from onResponse,
  // which runs just before it for the same response.
  let lastBodyGood = true;
  return new Promise((resolve, reject) => {
    const amount = Math.max(CONNECTIONS, Math.floor(options.amount));
    const instance = autocannon(
      {
        url: options.url,
        connections: CONNECTIONS,
        pipelining: 1,
        amount,
        timeout: 30,
        sampleInt: 100,
        method: options.method,
        headers: options.method === "POST" ? { "content-type": "application/json" } : {},
        requests: [
          {
            method: options.method,
            path: options.path,
            setupRequest: (req) => {
              const n = options.next();
              return {
                ...req,
                ...(n.body === undefined ? {} : { body: n.body }),
                headers: { ...req.headers, ...n.headers },
              };
            },
            onResponse: (status, body) => {
              lastBodyGood = status >= 200 && status < 300 && (options.good?.(body) ?? true);
              if (status < 200 || status >= 300) {
                rec.non2xx++;
                rec.failure(`${status} ${body}`);
              } else if (!lastBodyGood) {
                rec.mfa++;
                rec.failure(`${status} ${body}`);
              }
              options.seen?.(status, body);
            },
          },
        ],
      },
      (error, result) => {
        clearTimeout(timer);
        if (error !== null) return reject(error);
        rec.errors = result.errors;
        resolve(rec.result());
      },
    );
    instance.on("response", (_client, statusCode, _bytes, responseTime) =>
      rec.answer(statusCode, responseTime, lastBodyGood),
    );
    instance.on("reqError", (e) => rec.failure(`transport: ${String(e)}`));
    const timer = setTimeout(() => instance.stop(), options.seconds * 1000);
  });
}

const noMfa = (body: string) => !body.includes('"requires_mfa":true');

/**
 * Returning users' tokens: a pool of fresh tokens (a sign-in accepts a token once), each used at
 * most once per server. The first `returningUsers` are one per user, for their first sign-in;
 * the rest are taken in order by every returning phase. New users' tokens likewise, each once
 * per server. The cursors are the server's (its URL), so servers measured in turns (bench/run.ts
 * interleaves their phases) each go on where their last phase stopped; `reset` clears them.
 */
const cursors = new Map<string, number>();

/** The next token of `set` for `server`. */
function take(set: "returning" | "fresh", server: string): MintedToken | undefined {
  const key = `${set} ${server}`;
  const at = cursors.get(key) ?? 0;
  cursors.set(key, at + 1);
  return tokens[set][at];
}

/** Tokens of `set` that `server` has not had yet. */
function left(set: "returning" | "fresh", server: string): number {
  return Math.max(0, tokens[set].length - (cursors.get(`${set} ${server}`) ?? 0));
}

async function httpSignin(c: Extract<Command, { type: "http-signin" }>): Promise<PhaseResult> {
  if (c.set === "minted") {
    return cannon({
      url: c.url,
      method: "POST",
      path: c.path,
      seconds: c.seconds,
      amount: c.maxRequests,
      next: () => ({ body: mintedBody() }),
      good: noMfa,
    });
  }
  const fresh = c.set === "new";
  if ((fresh ? tokens.fresh : tokens.returning).length === 0) throw new Error("no tokens loaded");
  const amount = Math.min(c.maxRequests, left(fresh ? "fresh" : "returning", c.url));
  if (amount === 0)
    throw new Error(
      `the pool of ${fresh ? "new" : "returning"} tokens is used up: raise BENCH_${fresh ? "NEW_USERS" : "RETURNING_TOKENS"}`,
    );
  return cannon({
    url: c.url,
    method: "POST",
    path: c.path,
    seconds: c.seconds,
    amount,
    next: () => ({ body: bodyOf(c.style, take(fresh ? "fresh" : "returning", c.url)!) }),
    good: c.style === "rest" ? noMfa : undefined,
    seen:
      c.collect === true
        ? (status, body) => {
            if (status !== 200) return;
            const b = JSON.parse(body) as { refresh_token?: string; access_token?: string };
            if (typeof b.refresh_token === "string") refreshPool.push(b.refresh_token);
            if (typeof b.access_token === "string") accessTokens.push(b.access_token);
          }
        : undefined,
  });
}

async function httpRefresh(c: Extract<Command, { type: "http-refresh" }>): Promise<PhaseResult> {
  if (refreshPool.length < CONNECTIONS) throw new Error(`only ${refreshPool.length} refresh tokens collected`);
  let spent = "";
  return cannon({
    url: c.url,
    method: "POST",
    path: "/auth/token/refresh",
    seconds: c.seconds,
    amount: c.maxRequests,
    // Each token once: take the oldest unused one; each answer puts its successor in the pool.
    // (An empty pool would resend a spent token: a visible 401, never a silent success.)
    next: () => {
      const token = refreshPool.shift() ?? spent;
      spent = token;
      return { body: JSON.stringify({ refresh_token: token }) };
    },
    seen: (status, body) => {
      if (status !== 200) return;
      const b = JSON.parse(body) as { refresh_token?: string; access_token?: string };
      if (typeof b.refresh_token === "string") refreshPool.push(b.refresh_token);
    },
  });
}

async function httpMe(c: Extract<Command, { type: "http-me" }>): Promise<PhaseResult> {
  if (accessTokens.length === 0) throw new Error("no access tokens collected");
  let next = 0;
  return cannon({
    url: c.url,
    method: "GET",
    path: "/auth/me",
    seconds: c.seconds,
    amount: c.maxRequests,
    next: () => ({ headers: { authorization: `Bearer ${accessTokens[next++ % accessTokens.length]!}` } }),
  });
}

async function rpcSignin(c: Extract<Command, { type: "rpc-signin" }>): Promise<PhaseResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const transport =
    c.protocol === "grpc"
      ? createGrpcTransport({ baseUrl: c.url })
      : createConnectTransport({ baseUrl: c.url, httpVersion: "1.1", useBinaryFormat: false, nodeOptions: { agent } });
  const client = createClient(AuthService, transport);
  const rec = new Recorder();
  let next = 0;
  let stopped = false;
  const timer = setTimeout(() => (stopped = true), c.seconds * 1000);
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (!stopped && next < c.maxRequests && left("returning", c.url) > 0) {
        next++;
        const t = take("returning", c.url)!;
        const t0 = performance.now();
        try {
          const res = await client.signinWithIdToken({
            idToken: t.token,
            provider: "bench",
            deviceId: deviceIdOf(t.sub),
          });
          if (res.requiresMfa) {
            rec.mfa++;
            rec.failure(`requires_mfa: ${res.mfaCheckReason ?? ""}`);
          }
          rec.answer("OK", performance.now() - t0, !res.requiresMfa);
        } catch (e) {
          const code = e instanceof ConnectError ? Code[e.code] : "transport";
          rec.non2xx++;
          rec.failure(`${code}: ${String(e)}`);
          rec.answer(code, performance.now() - t0, false);
        }
      }
    }),
  );
  clearTimeout(timer);
  agent.destroy();
  return rec.result();
}

async function run(c: Command): Promise<PhaseResult | { done: true }> {
  switch (c.type) {
    case "tokens":
      tokens = JSON.parse(readFileSync(c.file, "utf8")) as Tokens;
      return { done: true };
    case "minter": {
      const mint = createSoakMinter(c.spec);
      minter = { mint, prefix: c.subjects.prefix, count: c.subjects.count, next: 0 };
      return { done: true };
    }
    case "reset":
      cursors.clear();
      refreshPool = [];
      accessTokens = [];
      return { done: true };
    case "http-signin":
      return httpSignin(c);
    case "http-refresh":
      return httpRefresh(c);
    case "http-me":
      return httpMe(c);
    case "rpc-signin":
      return rpcSignin(c);
  }
}

if (process.send === undefined) {
  process.stderr.write("bench/load.ts is started by bench/run.ts (it needs an IPC channel)\n");
  process.exit(2);
}
process.on("message", (message: { id: number; command: Command }) => {
  run(message.command).then(
    (result) => process.send!({ id: message.id, ok: true, result }),
    (e: unknown) =>
      process.send!({ id: message.id, ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) }),
  );
});
process.on("disconnect", () => process.exit(0));
