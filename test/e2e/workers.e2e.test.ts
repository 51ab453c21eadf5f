/**
 * `server.workers` (WORKERS=2): the real service as a supervisor and two workers sharing one
 * port, on SQLite and on PostgreSQL (TEST_DATABASE_URL). Concurrent sign-ins and refreshes all
 * succeed (no SQLITE_BUSY reaches a client with two writers on one file) and are served by both
 * workers; /metrics on any worker counts every worker's requests; readiness answers for all; a
 * worker killed with SIGKILL is restarted (logged, counted); SIGTERM stops every worker and the
 * supervisor exits 0. The same with kernel balancing (each worker its own SO_REUSEPORT socket).
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestDatabase, testDatabaseKinds } from "../support/databases.ts";
import { createHealthClient } from "../support/health-client.ts";
import { rpcCount } from "../support/raw-rpc.ts";
import { freePort, type ServiceProcess, startServiceProcess } from "../support/service-process.ts";
import { sqliteKind } from "../support/databases.ts";
import { devIdToken, uniqueSub } from "../support/signin-e2e.ts";

const SIGNIN = "identity.v1.AuthService/SigninWithIdToken";
const REFRESH = "identity.v1.AuthService/RefreshToken";
/** Sign-ins of the concurrent phase (bounded), IN_FLIGHT at a time. */
const SIGNINS = 80;
const IN_FLIGHT = 16;
const json = { "content-type": "application/json" };

interface Line {
  msg: string;
  worker?: number;
  pid?: number;
  route?: string;
  status?: number;
  [key: string]: unknown;
}

const lines = (t: ServiceProcess): Line[] =>
  t
    .logs()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Line);

async function waitFor<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs `n` jobs, `width` at a time. */
async function pool<T>(n: number, width: number, job: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await job(i);
      }
    }),
  );
  return out;
}

for (const kind of testDatabaseKinds()) {
  describe(`WORKERS=2 on ${kind.dialect}`, () => {
    let db: TestDatabase;
    let t: ServiceProcess;

    beforeAll(async () => {
      db = await kind.create();
      t = await startServiceProcess({
        env: { WORKERS: "2" },
        config: { dev: true, database: { url: db.url }, server: { health_watch_interval_ms: 200 } },
      });
    }, 90_000);
    afterAll(async () => {
      await t?.stop();
      await db?.drop();
    });

    it("starts two workers on one port, after one migration run", () => {
      const listening = lines(t).filter((l) => l.msg === "worker listening");
      expect(new Set(listening.map((l) => l.worker))).toEqual(new Set([1, 2]));
      expect(lines(t).filter((l) => l.msg === "migrations applied")).toHaveLength(1);
      expect(lines(t).find((l) => l.msg === "listening")).toMatchObject({ workers: 2 });
    });

    it(
      "serves concurrent sign-ins and refreshes on both workers, all 200, every one counted in one /metrics",
      { timeout: 120_000 },
      async () => {
        const signinsBefore = await rpcCount(t.url, SIGNIN, "ok");
        // Half the sign-ins are a second one of the same user, racing the first (same rows).
        const subs = Array.from({ length: SIGNINS / 2 }, () => uniqueSub("w"));
        const tokens = await pool(SIGNINS, IN_FLIGHT, (i) => devIdToken(t.url, subs[i % subs.length]!));
        const answers = await pool(SIGNINS, IN_FLIGHT, async (i) => {
          const res = await fetch(`${t.url}/auth/id-token/signin`, {
            method: "POST",
            headers: json,
            body: JSON.stringify({ id_token: tokens[i], provider: "dev", device_id: `d-${i}` }),
          });
          return { status: res.status, body: (await res.json()) as { refresh_token?: string; code?: string } };
        });
        expect(answers.filter((a) => a.status !== 200)).toEqual([]);
        const refreshed = await pool(SIGNINS, IN_FLIGHT, async (i) => {
          const res = await fetch(`${t.url}/auth/token/refresh`, {
            method: "POST",
            headers: json,
            body: JSON.stringify({ refresh_token: answers[i]!.body.refresh_token }),
          });
          return { status: res.status, body: await res.text() };
        });
        expect(refreshed.filter((r) => r.status !== 200)).toEqual([]);

        // Both workers answered sign-ins (the supervisor hands connections round-robin).
        await waitFor("access lines", () =>
          lines(t).filter((l) => l.route === "/auth/id-token/signin").length >= SIGNINS ? true : undefined,
        );
        const byWorker = new Map<number, number>();
        for (const l of lines(t).filter((l) => l.route === "/auth/id-token/signin"))
          byWorker.set(l.worker!, (byWorker.get(l.worker!) ?? 0) + 1);
        expect([...byWorker.keys()].sort()).toEqual([1, 2]);
        // Whichever worker answers /metrics, it counts both workers' sign-ins.
        for (let i = 0; i < 4; i++) expect(await rpcCount(t.url, SIGNIN, "ok")).toBe(signinsBefore + SIGNINS);
        expect(await rpcCount(t.url, REFRESH, "ok")).toBe(SIGNINS);
        const metrics = await (await fetch(`${t.url}/metrics`)).text();
        expect(metrics).toContain('identity_workers{state="serving"} 2');
        // Never a busy database reaching a client, nor in the logs.
        expect(t.logs()).not.toMatch(/SQLITE_BUSY|database is locked|"code":"unavailable"/);
      },
    );

    it("answers readiness and gRPC health for the whole service", async () => {
      for (let i = 0; i < 4; i++) {
        const res = await fetch(`${t.url}/readyz`);
        expect(res.status).toBe(200);
      }
      const health = createHealthClient(t.url);
      expect(await health.check("")).toEqual({ status: "SERVING" });
    });

    it(
      "is not ready while one worker cannot answer (stopped), and ready again once it can",
      { timeout: 60_000 },
      async () => {
        const stuck = lines(t).find((l) => l.msg === "worker listening" && l.worker === 1)!;
        process.kill(stuck.pid!, "SIGSTOP");
        try {
          // Connections handed to the stopped worker hang: short deadlines, until the live one answers.
          const answer = await waitFor("a not-ready answer from the live worker", async () => {
            const res = await fetch(`${t.url}/readyz`, {
              headers: { connection: "close" },
              signal: AbortSignal.timeout(4000),
            }).catch(() => undefined);
            return res === undefined
              ? undefined
              : { status: res.status, body: (await res.json()) as { reason?: string } };
          });
          expect(answer.status).toBe(503);
          expect(answer.body.reason).toMatch(/^worker_not_ready/);
        } finally {
          process.kill(stuck.pid!, "SIGCONT");
        }
        await waitFor("ready again", async () => ((await fetch(`${t.url}/readyz`)).status === 200 ? true : undefined));
      },
    );

    it("restarts a worker killed with SIGKILL, logs it, and keeps serving", { timeout: 90_000 }, async () => {
      const victim = lines(t)
        .filter((l) => l.msg === "worker listening" || l.msg === "worker restarted and listening")
        .find((l) => l.worker === 2)!;
      process.kill(victim.pid!, "SIGKILL");
      const exited = await waitFor("the exit to be logged", () =>
        lines(t).find((l) => l.msg === "worker exited unexpectedly; restarting it"),
      );
      expect(exited).toMatchObject({ worker: 2, pid: victim.pid, signal: "SIGKILL" });
      expect(exited["restart_in_ms"]).toBeGreaterThan(0);
      const back = await waitFor(
        "the restart",
        () => lines(t).find((l) => l.msg === "worker restarted and listening"),
        60_000,
      );
      expect(back.worker).toBe(2);
      expect(back.pid).not.toBe(victim.pid);
      const metrics = await (await fetch(`${t.url}/metrics`)).text();
      expect(metrics).toMatch(/^identity_worker_restarts_total 1$/m);
      expect(metrics).toContain('identity_workers{state="serving"} 2');
      const statuses = await pool(8, 4, async (i) => {
        const token = await devIdToken(t.url, uniqueSub(`after-${i}`));
        const res = await fetch(`${t.url}/auth/id-token/signin`, {
          method: "POST",
          headers: json,
          body: JSON.stringify({ id_token: token, provider: "dev" }),
        });
        return res.status;
      });
      expect(statuses).toEqual(Array(8).fill(200));
    });

    it("stops every worker on SIGTERM and exits 0", { timeout: 60_000 }, async () => {
      const code = await t.stop();
      expect(code).toBe(0);
      const stopped = lines(t).filter((l) => l.msg === "stopped");
      expect(new Set(stopped.map((l) => l.worker ?? 0))).toEqual(new Set([0, 1, 2]));
    });
  });
}

describe("WORKERS=2 with kernel balancing (SO_REUSEPORT), on sqlite", () => {
  let db: TestDatabase;
  let t: ServiceProcess;

  beforeAll(async () => {
    db = await sqliteKind.create();
    t = await startServiceProcess({
      env: { WORKERS: "2", WORKER_BALANCING: "kernel", PORT: String(await freePort()) },
      config: { dev: true, database: { url: db.url } },
    });
  }, 90_000);
  afterAll(async () => {
    await t?.stop();
    await db?.drop();
  });

  it(
    "spreads new connections over both workers' sockets; /metrics still counts both; SIGTERM stops all",
    { timeout: 120_000 },
    async () => {
      // Two listening sockets on the port (one per worker), where round-robin has the supervisor's one.
      const port = Number(new URL(t.url).port).toString(16).toUpperCase().padStart(4, "0");
      const listening = readFileSync("/proc/net/tcp", "utf8")
        .split("\n")
        .filter((l) => {
          const f = l.trim().split(/\s+/);
          return f[1]?.endsWith(`:${port}`) && f[3] === "0A";
        });
      expect(listening).toHaveLength(2);
      const n = 40;
      const tokens = await pool(n, 8, (i) => devIdToken(t.url, uniqueSub(`k${i}`)));
      // A connection each: the kernel picks a socket per connection.
      const statuses = await pool(n, 8, async (i) => {
        const res = await fetch(`${t.url}/auth/id-token/signin`, {
          method: "POST",
          headers: { ...json, connection: "close" },
          body: JSON.stringify({ id_token: tokens[i], provider: "dev" }),
        });
        await res.arrayBuffer();
        return res.status;
      });
      expect(statuses).toEqual(Array(n).fill(200));
      await waitFor("access lines", () =>
        lines(t).filter((l) => l.route === "/auth/id-token/signin").length >= n ? true : undefined,
      );
      const workers = new Set(
        lines(t)
          .filter((l) => l.route === "/auth/id-token/signin")
          .map((l) => l.worker),
      );
      expect([...workers].sort()).toEqual([1, 2]);
      expect(await rpcCount(t.url, SIGNIN, "ok")).toBe(n);
      expect(await t.stop()).toBe(0);
    },
  );
});
