/**
 * `server.workers` > 1: one supervisor process (node:cluster's primary) and that many workers,
 * each a full replica of the service (its own app, database pool, caches) sharing one port.
 *
 * Why node:cluster and not `reusePort` alone: the primary accepts each connection and hands it
 * to a worker round-robin, so it always knows which workers receive traffic (exactly those that
 * listen), and the IPC channel it already has carries what the workers must share: one /metrics
 * for the whole service (prom-client's cluster aggregation), one readiness for all of them, the
 * drain and the stop. The cost is one handle passed per new connection, not per request
 * (keep-alive and HTTP/2 connections stay with their worker). With `reusePort` the kernel
 * spreads connections without a primary, but then nothing sees all workers: each would need a
 * metrics and readiness exchange of its own, and a port 0 would give each worker its own port.
 *
 * The supervisor:
 * - prepares once, before forking (`prepare`: migrations, the integrity check, the key-encryption
 *   key file, the first signing key, the dev issuer's key), so workers never race to create them;
 * - starts the workers and is "listening" once all of them are;
 * - answers GET /metrics on any worker with every worker's metrics added up, plus its own
 *   (`identity_workers`, `identity_worker_restarts_total`);
 * - answers readiness (GET /readyz, gRPC health) on any worker from all of them: ready only
 *   while every serving worker is ready, since the primary hands connections to every one;
 * - drains on SIGTERM/SIGINT (main.ts's shutdown steps, sent to every worker: not ready, then
 *   drain and close) and resolves once every worker has stopped;
 * - restarts a worker that exits unasked, after a backoff that doubles from
 *   `restartInitialMs` up to `restartMaxMs` (reset once a worker has served for a minute), and
 *   logs each exit and restart. A worker that fails before the service was first up fails the
 *   start instead (a bad config or an unreachable database would otherwise loop for ever).
 *
 * Workers ignore SIGINT/SIGTERM themselves (Ctrl-C reaches the whole process group): they stop
 * when the supervisor says so, or when it is gone (IPC disconnect).
 */
import cluster, { type Worker } from "node:cluster";
import { availableParallelism } from "node:os";
import type { Logger } from "../logger.ts";
import { aggregateMetrics, createClusterMetrics, type MetricsJson } from "../telemetry/metrics.ts";

/** `server.workers` as a number of processes: `auto` is the cores this process may use. */
export function workerCount(setting: number | "auto"): number {
  return setting === "auto" ? availableParallelism() : setting;
}

/**
 * Whether this process is a worker started by the supervisor. A worker ignores SIGINT and
 * SIGTERM from then on: Ctrl-C (and `timeout`, `kill 0`) signal the whole process group, and the
 * supervisor decides when its workers drain and stop.
 */
export function isClusterWorker(): boolean {
  if (!cluster.isWorker) return false;
  if (process.listenerCount("SIGTERM") === 0) {
    process.on("SIGINT", () => {});
    process.on("SIGTERM", () => {});
  }
  return true;
}

type Question = "metrics" | "ready";

/** Supervisor → worker. */
type ToWorker =
  | { identity: "gather"; id: number; what: Question }
  | { identity: "answer"; id: number; value: unknown }
  | { identity: "drain" }
  | { identity: "close" }
  /** A second stop request: cut the drain short (main.ts `hurry`). */
  | { identity: "hurry" };

/** Worker → supervisor. */
type ToPrimary =
  | { identity: "listening"; url: string; metricsUrl: string }
  | { identity: "gathered"; id: number; value: unknown }
  | { identity: "ask"; id: number; what: Question };

/** A worker's answer to "ready?": null when ready, else why not. */
type ReadyAnswer = string | null;

const GATHER_TIMEOUT_MS = 2000;

/** What a worker's app takes to answer for the whole service (app.ts `options.cluster`). */
export interface ClusterPeer {
  /** This worker's slot, 1..workers (log lines carry it as `worker`). */
  slot: number;
  /** Every worker's metrics (and the supervisor's), as one Prometheus text. */
  metrics(): Promise<string>;
  /** Why another serving worker is not ready, or undefined when all are. */
  othersReady(): Promise<string | undefined>;
}

/** What the supervisor looks like to main.ts: the same steps as a single process's app. */
export interface Supervisor {
  listen(): Promise<{ url: string }>;
  metricsUrl(): string;
  drain(): void;
  /** `hurry`, when aborted, cuts every worker's drain short, as it does a single process's. */
  close(options?: { hurry?: AbortSignal }): Promise<void>;
}

interface Slot {
  n: number;
  worker: Worker | undefined;
  listening: boolean;
  startedAt: number;
  failures: number;
  /** Set once this slot's worker was asked to stop (close), so its exit is no crash. */
  stopping: boolean;
}

export function createSupervisor(options: {
  workers: number;
  logger: Logger;
  /** Runs once before any worker starts (migrations, key ring...). */
  prepare: () => Promise<void>;
  /** The environment added to each worker's (its slot). */
  workerEnv: (slot: number) => Record<string, string>;
  shutdownTimeoutMs: number;
  restartInitialMs?: number;
  restartMaxMs?: number;
}): Supervisor {
  const { logger } = options;
  const restartInitialMs = options.restartInitialMs ?? 500;
  const restartMaxMs = options.restartMaxMs ?? 30_000;
  const metrics = createClusterMetrics();
  const slots: Slot[] = Array.from({ length: options.workers }, (_, i) => ({
    n: i + 1,
    worker: undefined,
    listening: false,
    startedAt: 0,
    failures: 0,
    stopping: false,
  }));
  let url: string | undefined;
  let metricsUrl: string | undefined;
  let up = false;
  let draining = false;
  let closing = false;
  let onStartFailure: ((e: Error) => void) | undefined;
  let onAllListening: (() => void) | undefined;
  let onAllExited: (() => void) | undefined;
  let nextId = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; timer: NodeJS.Timeout }>();

  const serving = () => slots.filter((s) => s.worker !== undefined && s.listening);
  const report = () => metrics.workers(serving().length, options.workers);

  /** Asks each serving worker (but `except`) one question; a silent worker answers undefined. */
  function gather(what: Question, except?: Worker): Promise<unknown[]> {
    return Promise.all(
      serving()
        .filter((s) => s.worker !== except)
        .map(
          (s) =>
            new Promise<unknown>((resolve) => {
              const id = ++nextId;
              const timer = setTimeout(() => {
                pending.delete(id);
                resolve(undefined);
              }, GATHER_TIMEOUT_MS);
              pending.set(id, { resolve, timer });
              send(s.worker!, { identity: "gather", id, what });
            }),
        ),
    );
  }

  async function answer(what: Question, asker: Worker): Promise<unknown> {
    if (what === "metrics") {
      const parts = (await gather("metrics")).filter((p): p is MetricsJson => Array.isArray(p));
      return aggregateMetrics([...parts, await metrics.json()]);
    }
    if (draining) return "draining";
    const answers = await gather("ready", asker);
    // A worker that did not answer in time (undefined) is not ready either.
    const bad = answers.filter((a) => a !== null);
    return bad.length === 0 ? null : `worker_not_ready: ${typeof bad[0] === "string" ? bad[0] : "no answer"}`;
  }

  function fork(slot: Slot): void {
    const worker = cluster.fork(options.workerEnv(slot.n));
    slot.worker = worker;
    slot.listening = false;
    slot.stopping = false;
    slot.startedAt = Date.now();
    worker.on("message", (m: ToPrimary) => {
      if (m.identity === "listening") {
        slot.listening = true;
        url ??= m.url;
        metricsUrl ??= m.metricsUrl;
        report();
        if (!up) logger.info("worker listening", { worker: slot.n, pid: worker.process.pid });
        else logger.info("worker restarted and listening", { worker: slot.n, pid: worker.process.pid });
        // Asked while it was starting (before it listened to the supervisor): ask again now.
        if (draining) send(worker, { identity: "drain" });
        if (closing) send(worker, { identity: "close" });
        if (slots.every((s) => s.listening)) onAllListening?.();
      } else if (m.identity === "gathered") {
        const p = pending.get(m.id);
        if (p === undefined) return;
        pending.delete(m.id);
        clearTimeout(p.timer);
        p.resolve(m.value);
      } else if (m.identity === "ask") {
        answer(m.what, worker).then(
          (value) => send(worker, { identity: "answer", id: m.id, value }),
          (e: unknown) => {
            logger.warn("could not answer a worker", { worker: slot.n, question: m.what, cause: String(e) });
            send(worker, { identity: "answer", id: m.id, value: m.what === "metrics" ? "" : "cluster_error" });
          },
        );
      }
    });
    worker.on("exit", (code, signal) => {
      if (slot.worker !== worker) return;
      slot.worker = undefined;
      slot.listening = false;
      report();
      const asked = slot.stopping || closing;
      if (asked) {
        if (code !== 0)
          logger.warn("worker stopped with an error", { worker: slot.n, pid: worker.process.pid, code, signal });
        if (slots.every((s) => s.worker === undefined)) onAllExited?.();
        return;
      }
      if (!up) {
        onStartFailure?.(
          new Error(`worker ${slot.n} exited (${signal ?? code}) before the service was up; its output above says why`),
        );
        return;
      }
      const lived = Date.now() - slot.startedAt;
      slot.failures = lived > 60_000 ? 1 : slot.failures + 1;
      const delayMs = Math.min(restartMaxMs, restartInitialMs * 2 ** (slot.failures - 1));
      logger.error("worker exited unexpectedly; restarting it", {
        worker: slot.n,
        pid: worker.process.pid,
        code,
        signal,
        lived_ms: lived,
        restart_in_ms: delayMs,
      });
      setTimeout(() => {
        if (closing) return;
        metrics.restarted();
        fork(slot);
      }, delayMs);
    });
  }

  function stop(slot: Slot): void {
    if (slot.worker === undefined || slot.stopping) return;
    slot.stopping = true;
    send(slot.worker, { identity: "close" });
  }

  function killAll(): void {
    for (const s of slots) {
      s.stopping = true;
      s.worker?.process.kill("SIGKILL");
    }
  }

  return {
    async listen() {
      await options.prepare();
      // The workers run this same program (process.argv), as workers.
      await new Promise<void>((resolve, reject) => {
        onAllListening = resolve;
        onStartFailure = (e) => {
          killAll();
          reject(e);
        };
        for (const slot of slots) fork(slot);
      });
      up = true;
      onAllListening = undefined;
      onStartFailure = undefined;
      return { url: url! };
    },
    metricsUrl: () => {
      if (metricsUrl === undefined) throw new Error("not listening");
      return metricsUrl;
    },
    drain() {
      draining = true;
      for (const s of slots) if (s.worker !== undefined) send(s.worker, { identity: "drain" });
    },
    async close(closeOptions) {
      draining = true;
      closing = true;
      if (slots.every((s) => s.worker === undefined)) return;
      const hurryAll = () => {
        for (const s of slots) if (s.worker !== undefined) send(s.worker, { identity: "hurry" });
      };
      if (closeOptions?.hurry?.aborted === true) hurryAll();
      else closeOptions?.hurry?.addEventListener("abort", hurryAll, { once: true });
      const exited = new Promise<void>((resolve) => (onAllExited = resolve));
      for (const s of slots) stop(s);
      // Each worker bounds its own drain (server.shutdown_timeout_ms); this bounds a stuck one.
      const timer = setTimeout(() => {
        logger.error("workers did not stop in time; killing them", { timeout_ms: options.shutdownTimeoutMs + 5000 });
        killAll();
      }, options.shutdownTimeoutMs + 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function send(worker: Worker, message: ToWorker): void {
  if (!worker.isConnected()) return;
  worker.send(message, (e: Error | null) => {
    // A worker that just died: its exit is handled on its own.
    void e;
  });
}

/**
 * The worker's side of the IPC channel: what app.ts takes as `options.cluster` (`peer`), and
 * `serve`, which answers the supervisor's questions from this worker's app and runs its steps.
 * Resolves once the supervisor said close (or is gone) and the app has closed.
 */
export function createWorkerLink(slot: number): {
  peer: ClusterPeer;
  serve(app: {
    url(): string;
    metricsUrl(): string;
    localMetrics(): Promise<MetricsJson>;
    localReadiness(): Promise<ReadyAnswer>;
    drain(): void;
    close(options: { hurry: AbortSignal }): Promise<void>;
  }): Promise<void>;
} {
  let nextId = 0;
  const waiting = new Map<number, (value: unknown) => void>();
  const toPrimary = (m: ToPrimary) => {
    if (process.connected) process.send!(m);
  };
  process.on("message", (m: ToWorker) => {
    if (m.identity !== "answer") return;
    waiting.get(m.id)?.(m.value);
    waiting.delete(m.id);
  });

  function ask(what: Question): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (!process.connected) return reject(new Error("the supervisor is gone"));
      const id = ++nextId;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error(`the supervisor did not answer (${what})`));
      }, GATHER_TIMEOUT_MS * 2);
      waiting.set(id, (value) => {
        clearTimeout(timer);
        resolve(value);
      });
      toPrimary({ identity: "ask", id, what });
    });
  }

  return {
    peer: {
      slot,
      metrics: async () => String(await ask("metrics")),
      othersReady: async () => {
        const reason = await ask("ready");
        return reason === null ? undefined : String(reason);
      },
    },
    serve(app) {
      return new Promise<void>((resolve) => {
        let closing: Promise<void> | undefined;
        const hurry = new AbortController();
        const close = () => {
          closing ??= app.close({ hurry: hurry.signal }).then(resolve);
        };
        process.on("message", (m: ToWorker) => {
          if (m.identity === "gather") {
            const work = m.what === "metrics" ? app.localMetrics() : app.localReadiness();
            work.then(
              (value) => toPrimary({ identity: "gathered", id: m.id, value }),
              (e: unknown) =>
                toPrimary({ identity: "gathered", id: m.id, value: m.what === "metrics" ? [] : String(e) }),
            );
          } else if (m.identity === "drain") {
            app.drain();
          } else if (m.identity === "close") {
            close();
          } else if (m.identity === "hurry") {
            hurry.abort();
          }
        });
        // The supervisor is gone (killed): nobody hands this worker connections any more.
        process.on("disconnect", close);
        toPrimary({ identity: "listening", url: app.url(), metricsUrl: app.metricsUrl() });
      });
    },
  };
}
