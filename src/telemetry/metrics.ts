import {
  AggregatorRegistry,
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  type MetricObjectWithValues,
  type MetricValue,
  Registry,
} from "prom-client";
import type { AuthEvents } from "../core/auth-events.ts";

/**
 * RPC latency buckets, in seconds. They start at 0.5 ms: a sign-in costs under 1 ms of CPU, so
 * buckets from 5 ms up would put every healthy call in the first one.
 */
const RPC_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** Statement batches on SQLite take microseconds, on PostgreSQL a round trip or two. */
const DB_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** The connection pool's state, when the database has one (PostgreSQL), read at each scrape. */
export interface PoolStats {
  max: number;
  open: number;
  idle: number;
  waiting: number;
}

export interface ServiceMetrics {
  /** One finished RPC (any protocol): `code` is `ok` or the stable error code. */
  rpc(method: string, protocol: string, code: string, seconds: number): void;
  /** A request for an RPC or REST route refused before it reached the method (undecodable, wrong type, too large). */
  malformed(protocol: string): void;
  /** Sign-in and MFA outcomes, reported by the core. */
  events: AuthEvents;
  /** One attempt to fetch a provider's keys (discovery and JWKS). */
  jwksFetch(provider: string, ok: boolean): void;
  /** One statement batch: `store` is `hot` (driver) or `prisma`. */
  query(store: "hot" | "prisma", operation: string, seconds: number): void;
  /** Exposes a connection pool's state, read at each scrape. */
  watchPool(stats: () => PoolStats): void;
  contentType: string;
  /** Prometheus text exposition. */
  render(): Promise<string>;
  /** This process's metrics as data, for a cluster's primary to add up (`aggregateMetrics`). */
  json(): Promise<MetricsJson>;
}

/** One process's metrics as prom-client hands them between processes. */
export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/**
 * The service's Prometheus metrics, on a registry of its own (so two apps in one process, as in
 * tests, never share counters). Labels are bounded sets: method names, protocols, stable error
 * codes, configured provider names (anything else a request names counts as `other`).
 */
export function createMetrics(options: { providers: readonly string[] }): ServiceMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const providers = new Set(options.providers);
  const providerLabel = (p: string | undefined) => (p === undefined ? "none" : providers.has(p) ? p : "other");

  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Counter({ name, help, labelNames, registers: [registry] });
  const histogram = <L extends string>(name: string, help: string, labelNames: readonly L[], buckets: number[]) =>
    new Histogram({ name, help, labelNames, buckets, registers: [registry] });
  const rpcRequests = counter(
    "identity_rpc_requests_total",
    "RPCs handled, by method, protocol (rest, connect, grpc, grpc-web) and outcome (ok or stable error code).",
    ["method", "protocol", "code"],
  );
  const rpcDuration = histogram(
    "identity_rpc_duration_seconds",
    "RPC handling time, from the first interceptor to the answer message.",
    ["method", "protocol"],
    RPC_BUCKETS,
  );
  const malformed = counter(
    "identity_malformed_requests_total",
    "Requests for an RPC or REST route refused before reaching the method (undecodable body, wrong content type, too large, wrong HTTP method).",
    ["protocol"],
  );
  const signins = counter(
    "identity_signins_total",
    "Sign-ins with an ID token, by provider and outcome (success, mfa_required or the refusal's code).",
    ["provider", "outcome"],
  );
  const risk = counter("identity_signin_risk_total", "Assessed sign-ins by risk level.", ["level"]);
  const challenges = counter("identity_mfa_challenges_total", "MFA challenges issued by sign-ins, by provider.", [
    "provider",
  ]);
  const verifications = counter(
    "identity_mfa_verifications_total",
    "Answers to MFA challenges, by method and outcome (success or the refusal's code).",
    ["method", "outcome"],
  );
  const passkeyRegistrations = counter(
    "identity_passkey_registrations_total",
    "Passkey registrations finished, by outcome (success or the refusal's code).",
    ["outcome"],
  );
  const jwksFetches = counter(
    "identity_jwks_fetches_total",
    "Fetches of a provider's signing keys (discovery and JWKS), by provider.",
    ["provider"],
  );
  const jwksFailures = counter(
    "identity_jwks_fetch_failures_total",
    "Fetches of a provider's signing keys that failed (timeout, HTTP error, bad document).",
    ["provider"],
  );
  const queries = histogram(
    "identity_db_query_duration_seconds",
    "Database statement batches: store `hot` (the driver's prepared statements, one per operation) or `prisma` (per statement).",
    ["store", "operation"],
    DB_BUCKETS,
  );
  return {
    rpc(method, protocol, code, seconds) {
      rpcRequests.inc({ method, protocol, code });
      rpcDuration.observe({ method, protocol }, seconds);
    },
    malformed(protocol) {
      malformed.inc({ protocol });
    },
    events: {
      signin(provider, outcome, level) {
        const p = providerLabel(provider);
        signins.inc({ provider: p, outcome });
        if (level !== undefined) risk.inc({ level });
        if (outcome === "mfa_required") challenges.inc({ provider: p });
      },
      mfaVerification(method, outcome) {
        verifications.inc({ method, outcome });
      },
      passkeyRegistration(outcome) {
        passkeyRegistrations.inc({ outcome });
      },
    },
    jwksFetch(provider, ok) {
      jwksFetches.inc({ provider });
      if (!ok) jwksFailures.inc({ provider });
    },
    query(store, operation, seconds) {
      queries.observe({ store, operation }, seconds);
    },
    watchPool(pool) {
      new Gauge({
        name: "identity_db_pool_connections",
        help: "PostgreSQL pool connections: max (pool size), open, idle, and callers waiting for one.",
        labelNames: ["state"] as const,
        registers: [registry],
        collect() {
          const stats = pool();
          this.set({ state: "max" }, stats.max);
          this.set({ state: "open" }, stats.open);
          this.set({ state: "idle" }, stats.idle);
          this.set({ state: "waiting" }, stats.waiting);
        },
      });
    },
    contentType: registry.contentType,
    render: () => registry.metrics(),
    json: () => registry.getMetricsAsJSON(),
  };
}

/**
 * Every worker's metrics as one Prometheus text (prom-client's cluster aggregation: counters and
 * histograms summed, gauges by their declared aggregator), so a scrape of any worker sees the
 * whole service.
 */
export async function aggregateMetrics(parts: readonly MetricsJson[]): Promise<string> {
  return AggregatorRegistry.aggregate(parts as MetricsJson[]).metrics();
}

/** The supervisor's own metrics: worker processes by state and restarts. */
export function createClusterMetrics(): {
  restarted(): void;
  workers(live: number, wanted: number): void;
  json(): Promise<MetricsJson>;
} {
  const registry = new Registry();
  const restarts = new Counter({
    name: "identity_worker_restarts_total",
    help: "Worker processes started again after one exited unasked.",
    registers: [registry],
  });
  const workers = new Gauge({
    name: "identity_workers",
    help: "Worker processes: wanted (server.workers) and serving (listening).",
    labelNames: ["state"] as const,
    registers: [registry],
  });
  restarts.inc(0);
  return {
    restarted: () => restarts.inc(),
    workers(live, wanted) {
      workers.set({ state: "serving" }, live);
      workers.set({ state: "wanted" }, wanted);
    },
    json: () => registry.getMetricsAsJSON(),
  };
}

/** The first keyword of a Prisma statement, as a bounded metrics label. */
export function statementKind(sql: string): string {
  const word = /^\s*(\w+)/.exec(sql)?.[1]?.toLowerCase();
  return word !== undefined &&
    ["select", "insert", "update", "delete", "begin", "commit", "rollback", "with"].includes(word)
    ? word
    : "other";
}
