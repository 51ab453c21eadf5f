import { z } from "zod";
import { cidr, seconds } from "./schema-values.ts";

/** The process's sections: the server and its limits, tracing, the database. */

/**
 * What is wrong with a database URL's scheme, or undefined when it is `file:` or
 * `postgres(ql)://`. Never echoes more than the scheme (the rest may hold a password); a bare
 * path (no scheme) is shown, with the `file:` it lacks.
 */
function databaseUrlProblem(url: string): string | undefined {
  if (/^postgres(ql)?:\/\//.test(url) || url.startsWith("file:")) return undefined;
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1];
  if (scheme === undefined || /^[a-z]$/i.test(scheme))
    return `"${url}" is a path, not a URL: write file:${url} for SQLite`;
  if (/^postgres(ql)?$/i.test(scheme)) return `${scheme}: needs // and a host: postgresql://user@host:5432/database`;
  return `got ${scheme}:, which is not supported: use file:PATH (SQLite) or postgresql://user@host:5432/database`;
}

/** The listener: address, TLS, workers, connection and request limits, draining. */
export const server = z
  .object({
    host: z.string().default("127.0.0.1"),
    port: z.number().int().min(0).max(65535).default(8080),
    public_url: z.url().optional().describe("Base URL clients reach us at"),
    tls: z.object({ cert_file: z.string(), key_file: z.string() }).strict().optional(),
    body_limit_bytes: z
      .number()
      .int()
      .min(1024)
      .max(10 * 1024 * 1024)
      .default(64 * 1024),
    workers: z
      .union([z.number().int().min(1).max(256), z.literal("auto")])
      .default(1)
      .describe("Processes serving the port (node:cluster); auto: one per available core"),
    worker_balancing: z
      .enum(["round_robin", "kernel"])
      .default("round_robin")
      .describe(
        "workers > 1: the supervisor hands out connections in turn, or each worker has its own SO_REUSEPORT socket (needs a fixed port)",
      ),
    shutdown_timeout_ms: z.number().int().min(0).default(10_000),
    shutdown_delay_ms: z
      .number()
      .int()
      .min(0)
      .default(5000)
      .describe("SIGTERM: not ready at once, still serving this long, then drain"),
    health_watch_interval_ms: z
      .number()
      .int()
      .min(100)
      .default(5000)
      .describe("How often open Health.Watch calls re-check the database"),
    reflection: z.boolean().optional().describe("gRPC server reflection; default on in dev mode only"),
    max_connections: z
      .number()
      .int()
      .min(1)
      .default(1024)
      .describe("Open connections at most; more are closed at once"),
    max_connections_per_address: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe(
        "Open connections from one client address (IPv6: its prefix) at most; default min(64, ¾ of max_connections). Trusted proxies are exempt",
      ),
    max_requests_per_address: z
      .number()
      .int()
      .min(1)
      .default(128)
      .describe(
        "Requests in flight from one client address (behind trusted proxies: the forwarded one) at most; more answer 429 at once",
      ),
    max_streams_per_connection: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(100)
      .describe("HTTP/2 streams open at once on one connection"),
    handshake_timeout_ms: z
      .number()
      .int()
      .min(100)
      .default(10_000)
      .describe("A new connection's deadline to say its protocol (or finish TLS)"),
    idle_timeout_ms: z
      .number()
      .int()
      .min(100)
      .default(60_000)
      .describe("An HTTP/2 connection without traffic is closed after this"),
    request_timeout_ms: z
      .number()
      .int()
      .min(100)
      .default(30_000)
      .describe("A request's deadline to arrive whole (headers and body)"),
    trusted_proxies: z
      .array(cidr)
      .default([])
      .describe("Proxies (addresses or CIDRs) whose X-Forwarded-For is believed; checked at start-up"),
    web_app: z.boolean().optional().describe("Serve the web app at /; default: in dev mode only"),
    metrics_port: z
      .number()
      .int()
      .min(0)
      .max(65535)
      .optional()
      .describe("Serve GET /metrics on this port (same host) instead of the main one"),
    cors: z
      .object({
        allowed_origins: z.array(z.string()).default([]),
        max_age_seconds: seconds.default(600),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((srv, ctx) => {
    if (srv.max_connections_per_address !== undefined && srv.max_connections_per_address > srv.max_connections) {
      ctx.addIssue({
        code: "custom",
        path: ["max_connections_per_address"],
        message: "must not exceed server.max_connections",
      });
    }
    if (srv.worker_balancing === "kernel" && srv.workers !== 1 && srv.port === 0) {
      ctx.addIssue({
        code: "custom",
        path: ["worker_balancing"],
        message:
          "kernel balancing needs a fixed server.port: each worker binds a socket of its own, and port 0 would give each a port of its own",
      });
    }
  })
  .prefault({});

/** OpenTelemetry tracing. */
export const tracing = z
  .object({
    enabled: z.boolean().optional().describe("OpenTelemetry tracing; default: on when otlp_endpoint is set"),
    otlp_endpoint: z
      .url()
      .optional()
      .describe("OTLP/HTTP base URL (OTEL_EXPORTER_OTLP_ENDPOINT); /v1/traces is appended"),
    service_name: z.string().min(1).default("idtoken-signin"),
    sample_ratio: z
      .number()
      .min(0)
      .max(1)
      .default(1)
      .describe("Fraction of new traces kept; a caller's traceparent decides for its own"),
  })
  .strict()
  .prefault({});

/** Either dialect's database: its URL, start-up checks, pool and timeouts, the hot path's driver. */
export const database = z
  .object({
    url: z
      .string()
      .superRefine((url, ctx) => {
        const problem = databaseUrlProblem(url);
        if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
      })
      .optional()
      .describe("file:… (SQLite) or postgresql://…; default SQLite in data_dir"),
    migrate_on_start: z.boolean().default(true),
    quick_check_on_start: z
      .boolean()
      .default(true)
      .describe("SQLite: PRAGMA quick_check before start; a damaged database refuses to start"),
    pool_size: z.number().int().min(1).max(200).default(10),
    connect_timeout_ms: z.number().int().min(100).default(5000),
    statement_timeout_ms: z.number().int().min(100).default(5000),
    hot_path: z
      .enum(["driver", "prisma"])
      .default("driver")
      .describe("sign-in, refresh and session checks on prepared driver statements, or on Prisma Client alone"),
    sqlite: z
      .object({
        wal_max_bytes: z
          .number()
          .int()
          .min(1024 * 1024)
          .default(64 * 1024 * 1024)
          .describe(
            "SQLite: the WAL file's bound; restarted past half of it, writes wait past three quarters, a restarted WAL is truncated to a quarter",
          ),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .prefault({});
