import { databaseUrl } from "./to-deps.ts";
import type { Config } from "./schema.ts";

/**
 * Config -> what the frameworks' adapters take (the database pool, tracing, the listener, the
 * HTTP handler, the background jobs), each mapping once, beside `to-deps.ts` (what the core takes).
 */

/** The database as the app opens it (`database.*`). */
export function databaseOptions(config: Config) {
  const { database } = config;
  return {
    url: databaseUrl(config),
    poolSize: database.pool_size,
    connectTimeoutMs: database.connect_timeout_ms,
    statementTimeoutMs: database.statement_timeout_ms,
    sqliteWalMaxBytes: database.sqlite.wal_max_bytes,
  };
}

/** Tracing (`tracing.*`): on when enabled, or by default when an OTLP endpoint is set; null when off. */
export function tracingOptions(
  config: Config,
): { serviceName: string; otlpEndpoint: string | undefined; sampleRatio: number } | null {
  const { tracing } = config;
  if (!(tracing.enabled ?? tracing.otlp_endpoint !== undefined)) return null;
  return { serviceName: tracing.service_name, otlpEndpoint: tracing.otlp_endpoint, sampleRatio: tracing.sample_ratio };
}

/**
 * Where and how the server listens (`server.*`): address, TLS and the limits slow or greedy
 * clients meet. `worker`: one of several processes, which shares the port by SO_REUSEPORT when
 * `server.worker_balancing` is "kernel".
 */
export function listenOptions(config: Config, worker: boolean) {
  const { server } = config;
  return {
    host: server.host,
    port: server.port,
    tls: server.tls === undefined ? undefined : { certFile: server.tls.cert_file, keyFile: server.tls.key_file },
    reusePort: worker && server.worker_balancing === "kernel",
    limits: {
      maxConnections: server.max_connections,
      maxConnectionsPerAddress: server.max_connections_per_address ?? 64,
      maxStreamsPerConnection: server.max_streams_per_connection,
      handshakeTimeoutMs: server.handshake_timeout_ms,
      idleTimeoutMs: server.idle_timeout_ms,
      requestTimeoutMs: server.request_timeout_ms,
    },
  };
}

/** The HTTP handler's settings: body limit, CORS, the proxies believed, the per-address request cap. */
export function httpHandlerSettings(config: Config) {
  const { server, rate_limit } = config;
  return {
    bodyLimitBytes: server.body_limit_bytes,
    corsAllowedOrigins: server.cors.allowed_origins,
    corsMaxAgeSeconds: server.cors.max_age_seconds,
    trustedProxies: server.trusted_proxies,
    maxRequestsPerAddress: server.max_requests_per_address,
    addressPrefixes: { ipv4: rate_limit.ipv4_prefix, ipv6: rate_limit.ipv6_prefix },
  };
}

/**
 * What the server publishes beside the API: gRPC reflection (the whole schema, AdminService
 * included: on in dev mode, elsewhere only where the operator says so), the web app, and whether
 * /metrics is on the main port (unless `server.metrics_port` gives it one of its own).
 */
export function publishedExtras(config: Config): { reflection: boolean; webApp: boolean; metricsOnMainPort: boolean } {
  const { server } = config;
  return {
    reflection: server.reflection ?? config.dev,
    webApp: server.web_app ?? config.dev,
    metricsOnMainPort: server.metrics_port === undefined,
  };
}

/** The background jobs' settings: audit retention, how often refusals are written to the audit log. */
export function upkeepSettings(config: Config): { auditRetentionDays: number; refusalIntervalSeconds: number } {
  return {
    auditRetentionDays: config.audit.retention_days,
    refusalIntervalSeconds: config.rate_limit.refusal_audit_interval_seconds,
  };
}
