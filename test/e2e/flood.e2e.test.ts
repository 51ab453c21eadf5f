/**
 * A flood from one address (FLOOD_SECONDS, 10 by default, of bad sign-ins, VerifyMfa and refresh
 * calls at FLOOD_RATE, 600/s by default, the rate of the probe that found the problem (3,000
 * refusals in 5 s), several in flight) does not slow down everybody else: the other addresses' sign-in latency
 * stays within 2× of what it was before, the flood writes at most the limit's worth of audit rows
 * plus one aggregated row, and health stays fast. The service runs as a process of its own, so
 * the flood's client does not share its event loop. FLOOD_REPORT=1 prints the figures.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServiceProcess, startServiceProcess } from "../support/service-process.ts";
import { devIdToken, uniqueSub } from "../support/signin-e2e.ts";

const FLOOD_SECONDS = Number(process.env["FLOOD_SECONDS"] ?? 10);
const FLOOD_RATE = Number(process.env["FLOOD_RATE"] ?? 600);
const IN_FLIGHT = 8;
const LIMIT = 30;
const json = { "content-type": "application/json" };

describe("a flood from one address", () => {
  let t: ServiceProcess;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "identity-flood-"));
    t = await startServiceProcess({
      dir,
      config: {
        dev: true,
        rate_limit: { signin_failures_per_ip: LIMIT, refusal_audit_interval_seconds: 3600 },
        server: { trusted_proxies: ["127.0.0.1"] },
      },
    });
  });
  afterAll(async () => {
    // Stopped here too: a failed assertion skips the test's own stop, and a service left running
    // keeps loading the machine (and the next timing-sensitive run).
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const post = (path: string, body: unknown, ip: string) =>
    fetch(`${t.url}${path}`, {
      method: "POST",
      headers: { ...json, "x-forwarded-for": ip },
      body: JSON.stringify(body),
    });

  /** Sign-in latencies (ms) of fresh tokens from addresses other than the flood's. */
  async function latencies(n: number, label: string): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const token = await devIdToken(t.url, uniqueSub(label));
      const started = performance.now();
      const res = await post(
        "/auth/id-token/signin",
        { id_token: token, provider: "dev" },
        `198.51.100.${(i % 200) + 1}`,
      );
      await res.arrayBuffer();
      out.push(performance.now() - started);
      expect(res.status).toBe(200);
    }
    return out;
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

  it(
    `leaves other addresses within 2× of their normal latency for ${FLOOD_SECONDS} s`,
    { timeout: (FLOOD_SECONDS + 60) * 1000 },
    async () => {
      await latencies(10, "warm");
      const before = median(await latencies(30, "before"));

      const attacker = "203.0.113.66";
      const shapes = [
        ["/auth/id-token/signin", { id_token: "eyJhbGciOiJSUzI1NiJ9.e30.AAAA", provider: "dev" }],
        ["/auth/mfa/verify", { challenge_token: "chg_nope", method: "totp", code: "000000" }],
        ["/auth/token/refresh", { refresh_token: "rt_nope" }],
      ] as const;
      // The flood runs in a thread of its own (its own event loop), so that its client work does
      // not delay the measuring client's.
      const worker = new Worker(
        `const { parentPort, workerData: d } = require("node:worker_threads");
      let sent = 0;
      const statuses = {};
      const deadline = Date.now() + d.seconds * 1000;
      Promise.all(Array.from({ length: d.inFlight }, async () => {
        // Paced: each loop sends once per inFlight/rate seconds, or as fast as answers come.
        let next = Date.now();
        while (Date.now() < deadline) {
          next += (1000 * d.inFlight) / d.rate;
          const wait = next - Date.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          const [path, body] = d.shapes[sent++ % d.shapes.length];
          const res = await fetch(d.url + path, { method: "POST", headers: { "content-type": "application/json", "x-forwarded-for": d.ip }, body: JSON.stringify(body) });
          await res.arrayBuffer();
          statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        }
      })).then(() => parentPort.postMessage({ sent, statuses }));`,
        {
          eval: true,
          workerData: {
            url: t.url,
            ip: attacker,
            shapes,
            seconds: FLOOD_SECONDS,
            inFlight: IN_FLIGHT,
            rate: FLOOD_RATE,
          },
        },
      );
      const deadline = Date.now() + FLOOD_SECONDS * 1000;
      const flood = new Promise<{ sent: number; statuses: Record<string, number> }>((resolve, reject) => {
        worker.once("message", resolve);
        worker.once("error", reject);
      });
      // Give the flood a moment to reach the limit, then measure the others while it goes on.
      await new Promise((r) => setTimeout(r, 500));
      const during: number[] = [];
      while (Date.now() < deadline - 200) during.push(...(await latencies(5, "during")));
      const health: number[] = [];
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
        health.push(performance.now() - started);
      }
      const { sent, statuses } = await flood;
      await worker.terminate();

      // The flood went on at (nearly) its rate the whole time.
      expect(sent).toBeGreaterThan(0.8 * FLOOD_RATE * FLOOD_SECONDS);
      expect(statuses["429"] ?? 0).toBeGreaterThan(sent * 0.9);
      expect(Object.keys(statuses).every((s) => Number(s) < 500)).toBe(true);
      // 2× of normal, with 5 ms of slack for timer granularity on a busy machine.
      const figures = `median sign-in ${before.toFixed(1)} ms before, ${median(during).toFixed(1)} ms during; /healthz ${median(health).toFixed(1)} ms; ${sent} flood requests`;
      if (process.env["FLOOD_REPORT"] !== undefined) console.log(figures);
      expect(median(during), figures).toBeLessThanOrEqual(2 * before + 5);
      expect(median(health), figures).toBeLessThanOrEqual(2 * before + 5);

      // The flood wrote the limit's worth of failures, no row per refusal; one aggregated row at stop.
      expect(await t.stop()).toBe(0);
      const file = new Database(join(dir, "data", "identity.db"), { readonly: true });
      try {
        const failures = file
          .prepare(`SELECT count(*) AS n FROM audit_events WHERE ip = ? AND type <> 'address.rate_limited'`)
          .get(attacker) as { n: number };
        expect(failures.n).toBeLessThanOrEqual(LIMIT);
        const rows = file
          .prepare(`SELECT detail FROM audit_events WHERE ip = ? AND type = 'address.rate_limited'`)
          .all(attacker) as { detail: string }[];
        expect(rows).toHaveLength(1);
        expect((JSON.parse(rows[0]!.detail) as { count: number }).count).toBe(statuses["429"]);
      } finally {
        file.close();
      }
    },
  );
});
