import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import { createPublicUrls, type PublicUrls } from "./config/public-url.ts";
import type { Config } from "./config/schema.ts";
import { databaseSetting, databaseUrl } from "./config/to-deps.ts";
import { databaseOptions, tracingOptions } from "./config/to-options.ts";
import { type Clock, systemClock } from "./core/clock.ts";
import type { IdTokenVerifier } from "./core/ports/signin.ts";
import type { Logger } from "./logger.ts";
import type { RunningServer } from "./rpc/server.ts";
import { type Database, openDatabase, reachDatabase, sqlitePath } from "./store/database.ts";
import { checkSqliteIntegrity } from "./store/integrity-check.ts";
import { migrate } from "./store/migrate.ts";
import type { ReadinessProbe } from "./store/readiness.ts";
import { createMetrics, type MetricsJson, type ServiceMetrics, statementKind } from "./telemetry/metrics.ts";
import { startTracing, type Tracing } from "./telemetry/tracing.ts";
import type { LocalKeyRing } from "./tokens/access-tokens.ts";
import { createOpaqueTokens } from "./tokens/opaque-tokens.ts";
import type { ClusterPeer } from "./app/cluster.ts";
import { createLifecycle } from "./app/lifecycle.ts";
import { createListener } from "./app/listener.ts";
import { createSigninAddressLimit, createStores, createVerifier, openKeys, type ServiceParts } from "./app/parts.ts";
import { createAppReadiness } from "./app/readiness.ts";
import { buildServices } from "./app/services.ts";

/** What tests (and only tests) may replace when building the app. */
export interface AppOverrides {
  clock?: Clock;
  fetch?: typeof fetch;
  verifier?: IdTokenVerifier;
  /** Sees every SQL statement, through Prisma or the driver (benchmarks and tests count them). */
  onQuery?: (sql: string) => void;
  /** Sees every exchange with a PostgreSQL server (benchmarks and tests count round trips). */
  onRoundTrip?: () => void;
  /** Where spans go instead of OTLP when tracing is on (tests: an InMemorySpanExporter). */
  spanExporter?: SpanExporter;
}

export interface App {
  config: Config;
  database: Database;
  keyRing: LocalKeyRing;
  /** Whether the database accepts writes (what /readyz and gRPC health answer, besides draining). */
  readiness: ReadinessProbe;
  /** Every "METHOD /path" the server answers outside RPC paths (REST routes, plain endpoints). */
  routes: readonly string[];
  /** The base URL of the running server (after `listen`). */
  url(): string;
  /** Where GET /metrics is served (after `listen`): `server.metrics_port`, else the main URL. */
  metricsUrl(): string;
  listen(): Promise<RunningServer>;
  /** This process's own metrics as data (a cluster's supervisor adds up every worker's). */
  localMetrics(): Promise<MetricsJson>;
  /**
   * Stops being ready (`/readyz` 503, gRPC health NOT_SERVING, open health watches told at once)
   * while still serving every request: the first step of a shutdown, before `close`.
   */
  drain(): void;
  /**
   * Drains the server (if listening) and closes the database. `hurry`, when aborted, ends the
   * drain at once (open requests and connections are cut) instead of at `server.shutdown_timeout_ms`.
   */
  close(options?: { hurry?: AbortSignal }): Promise<void>;
}

/**
 * The single assembly point: builds stores, verifiers, signer, services and the HTTP handler
 * from the config, and nothing else (what each part is lives in its own room: config/to-deps.ts
 * and config/to-options.ts map settings, app/parts.ts builds the shared parts, app/services/ one
 * module per API service (listed in app/services.ts), app/listener.ts the HTTP handler,
 * app/lifecycle.ts listening and closing). Tests pass overrides instead of patching modules.
 */
export async function createApp(
  config: Config,
  logger: Logger,
  overrides: AppOverrides = {},
  options: {
    replaceUnreadableSigningKeys?: boolean;
    /** A worker of several (app/cluster.ts): /metrics and readiness answer for all of them. */
    cluster?: ClusterPeer | undefined;
  } = {},
): Promise<App> {
  const clock = overrides.clock ?? systemClock;
  await prepareDatabase(config, logger);
  const metrics = createMetrics({ providers: [...Object.keys(config.providers), ...(config.dev ? ["dev"] : [])] });
  const database = await openAppDatabase(config, logger, metrics, overrides);
  const urls = publicUrls(config, logger);
  let tracing: Tracing | undefined;
  try {
    const tracingSettings = tracingOptions(config);
    if (tracingSettings !== null) {
      tracing = await startTracing({ ...tracingSettings, exporter: overrides.spanExporter });
    }
    const tracer = tracing?.tracer;
    const replaceUnreadable = options.replaceUnreadableSigningKeys === true;
    const keys = await openKeys(config, { database, clock, logger, urls, replaceUnreadable });
    const { verifier, devIssuer } = await createVerifier(config, {
      clock,
      fetch: overrides.fetch,
      logger,
      metrics,
      urls,
      tracer,
      override: overrides.verifier,
    });
    const stores = createStores(config, database, metrics, tracer);
    const parts: ServiceParts = {
      ...keys,
      config,
      clock,
      logger,
      database,
      urls,
      verifier,
      stores,
      opaqueTokens: createOpaqueTokens(keys.kek),
      addressLimit: createSigninAddressLimit(config, stores, clock),
      events: metrics.events,
      onAuditFailure: (e) => logger.error("audit write failed", { cause: String(e) }),
    };
    // Every API service, one module each: their core services, and the services as served.
    const { cores, served } = buildServices(parts);

    const { probe, readiness, notReadyReason } = createAppReadiness({
      database,
      databaseUrl: databaseUrl(config),
      logger,
      pollIntervalMs: config.server.health_watch_interval_ms,
      cluster: options.cluster,
    });
    // What GET /metrics serves: this process's metrics, or in a cluster every worker's.
    const cluster = options.cluster;
    const servedMetrics =
      cluster === undefined ? metrics : { contentType: metrics.contentType, render: () => cluster.metrics() };
    const listener = createListener({
      parts,
      cores,
      served,
      metrics,
      servedMetrics,
      tracer,
      readiness,
      notReadyReason,
      devIssuer,
    });
    const worker = cluster !== undefined;
    const lifecycle = createLifecycle({ parts, listener, readiness, servedMetrics, tracing, worker });
    return {
      config,
      database,
      keyRing: keys.keyRing,
      readiness: probe,
      routes: listener.routes,
      localMetrics: () => metrics.json(),
      ...lifecycle,
    };
  } catch (e) {
    await database.close();
    await tracing?.shutdown();
    throw e;
  }
}

/** Before the database is opened: reachable, intact (SQLite, when asked), migrated (when asked). */
async function prepareDatabase(config: Config, logger: Logger): Promise<void> {
  const { url } = databaseOptions(config);
  await reachDatabase(url, { ...databaseSetting(config), connectTimeoutMs: config.database.connect_timeout_ms });
  if (url.startsWith("file:") && config.database.quick_check_on_start) checkSqliteIntegrity(sqlitePath(url));
  if (config.database.migrate_on_start) {
    const report = await migrate(url);
    if (report.applied.length > 0) logger.info("migrations applied", { applied: report.applied });
  }
}

/** The database, its statements counted (tests, benchmarks) and timed, its pool watched (PostgreSQL). */
async function openAppDatabase(
  config: Config,
  logger: Logger,
  metrics: ServiceMetrics,
  overrides: AppOverrides,
): Promise<Database> {
  const database = await openDatabase({
    ...databaseOptions(config),
    onQuery: overrides.onQuery,
    onRoundTrip: overrides.onRoundTrip,
    onPrismaQuery: (sql, seconds) => metrics.query("prisma", statementKind(sql), seconds),
    onIdleConnectionError: (e) =>
      logger.warn("an idle database connection was closed by the server; it will be replaced", { cause: String(e) }),
  });
  if (database.driver.dialect === "postgresql") {
    const pool = database.driver.pool;
    const max = config.database.pool_size;
    metrics.watchPool(() => ({ max, open: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }));
  }
  return database;
}

/** The one value the issuer, discovery, the JWKS URL and the dev issuer's URL derive from. */
function publicUrls(config: Config, logger: Logger): PublicUrls {
  const urls = createPublicUrls(config);
  if (!urls.configured && !config.dev) {
    logger.warn(
      "SERVER.PUBLIC_URL IS NOT SET: the issuer of our tokens and the URLs in discovery are taken from the " +
        "listening address, which other services and clients probably cannot reach; " +
        "set server.public_url (PUBLIC_URL) to the public HTTPS URL",
      { tokens_issuer: config.tokens.issuer ?? null },
    );
  }
  return urls;
}
