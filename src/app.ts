import { existsSync, mkdirSync, readFileSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { SpanKind, type Tracer } from "@opentelemetry/api";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import { ConfigError } from "./config/load.ts";
import { createPublicUrls } from "./config/public-url.ts";
import type { Config } from "./config/schema.ts";
import { type Clock, systemClock } from "./core/clock.ts";
import type { IdTokenVerifier } from "./core/ports/signin.ts";
import { createSigninService } from "./core/signin.ts";
import { type Logger } from "./logger.ts";
import { AuthService } from "../gen/pb/identity/v1/auth_service_pb.ts";
import { UserService } from "../gen/pb/identity/v1/user_service_pb.ts";
import { createSessionService } from "./core/sessions.ts";
import { authInterceptor } from "./rpc/auth-interceptor.ts";
import { registerAuthService } from "./rpc/auth-service.ts";
import { registerUserService } from "./rpc/user-service.ts";
import { createSessionStore } from "./store/session-store.ts";
import { file_google_rpc_error_details } from "../gen/pb/google/rpc/error_details_pb.ts";
import { Health } from "../gen/pb/grpc/health/v1/health_pb.ts";
import { registerHealthService } from "./rpc/health-service.ts";
import { createReadiness } from "./rpc/readiness.ts";
import { registerReflectionService } from "./rpc/reflection-service.ts";
import { errorInterceptor } from "./rpc/errors.ts";
import { telemetryInterceptor, tracingInterceptor } from "./rpc/telemetry-interceptor.ts";
import { createMetrics, type ServiceMetrics } from "./telemetry/metrics.ts";
import { instrumentMethods } from "./telemetry/instrument.ts";
import { startTracing, type Tracing } from "./telemetry/tracing.ts";
import { requestChecksInterceptor } from "./rpc/request-checks.ts";
import { createHttpHandler, type PlainHandler } from "./rpc/http-handler.ts";
import { type RunningServer, startServer } from "./rpc/server.ts";
import { webAppRoutes } from "./rpc/web-app.ts";
import { createAccountStore, createAuditLog } from "./store/account-store.ts";
import { type Database, openDatabase, sqlitePath } from "./store/database.ts";
import { checkSqliteIntegrity } from "./store/integrity-check.ts";
import { migrate } from "./store/migrate.ts";
import { createReadinessProbe, type ReadinessProbe } from "./store/readiness.ts";
import { createSigningKeyStore } from "./store/signing-key-store.ts";
import { createLocalKeyRing, type LocalKeyRing, SigningKeyUnreadableError } from "./tokens/access-tokens.ts";
import { createDevIssuer, DEV_CLIENT_ID, type DevMintRequest } from "./tokens/dev-issuer.ts";
import { createIdTokenVerifier, type ProviderVerification } from "./tokens/id-token-verifier.ts";
import { createKeyEncryption } from "./tokens/key-encryption.ts";
import { createOpaqueTokens } from "./tokens/opaque-tokens.ts";
import { createRemoteKeySet } from "./tokens/remote-key-set.ts";
import { writeSecretFile } from "./tokens/secret-file.ts";
import { type AdminService, createAdminService } from "./core/admin.ts";
import type { ClientInfo } from "./core/model.ts";
import type { PasswordExpiryPolicy } from "./core/password-policy.ts";
import { createPasswordService } from "./core/passwords.ts";
import { createAdminStore } from "./store/admin-store.ts";
import { createPasswordStore } from "./store/password-store.ts";
import { createArgon2PasswordHasher } from "./tokens/password-hasher.ts";
import { MfaService } from "../gen/pb/identity/v1/mfa_service_pb.ts";
import { AdminService as AdminApi } from "../gen/pb/identity/v1/admin_service_pb.ts";
import { adminInterceptor } from "./rpc/admin-interceptor.ts";
import { registerAdminService } from "./rpc/admin-service.ts";
import { createAdminKeyVerifier, parseAdminKeyHash } from "./tokens/admin-keys.ts";
import { type AdaptiveMfaDeps, createAdaptiveMfa } from "./core/adaptive-mfa.ts";
import { createMfaService } from "./core/mfa.ts";
import type { MfaPolicy } from "./core/risk.ts";
import { openGeoIp } from "./geo/geoip.ts";
import { registerMfaService } from "./rpc/mfa-service.ts";
import { createMfaStore } from "./store/mfa-store.ts";
import { createHotStore } from "./store/hot/hot-store.ts";
import type { HotStore } from "./store/hot/sqlite.ts";
import { createPrismaSigninReader } from "./store/hot/prisma.ts";
import { createRecoveryCodes } from "./tokens/recovery-codes.ts";
import { createSecretBox } from "./tokens/secret-box.ts";
import { createTotpEngine } from "./tokens/totp.ts";
import { createNonceSealer } from "./tokens/nonce-sealer.ts";
import { sha256Hex } from "./tokens/sha256.ts";
import { createAddressLimit } from "./core/address-limit.ts";
import { createNonceService } from "./core/nonces.ts";

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
  /**
   * Stops being ready (`/readyz` 503, gRPC health NOT_SERVING, open health watches told at once)
   * while still serving every request: the first step of a shutdown, before `close`.
   */
  drain(): void;
  /** Drains the server (if listening) and closes the database. */
  close(): Promise<void>;
}

/** The database URL in force: configured, or the embedded SQLite file in the data directory. */
export function databaseUrl(config: Config): string {
  return config.database.url ?? `file:${join(resolve(config.data_dir), "identity.db")}`;
}

/**
 * The single assembly point: builds stores, verifiers, signer, services and the HTTP handler
 * from the config. Everything the process does is reachable from here; tests pass overrides
 * instead of patching modules.
 */
export async function createApp(
  config: Config,
  logger: Logger,
  overrides: AppOverrides = {},
  options: { replaceUnreadableSigningKeys?: boolean } = {},
): Promise<App> {
  const clock = overrides.clock ?? systemClock;
  const url = databaseUrl(config);
  if (url.startsWith("file:") && config.database.quick_check_on_start) checkSqliteIntegrity(sqlitePath(url));
  if (config.database.migrate_on_start) {
    const report = await migrate(url);
    if (report.applied.length > 0) logger.info("migrations applied", { applied: report.applied });
  }
  const metrics = createMetrics({ providers: [...Object.keys(config.providers), ...(config.dev ? ["dev"] : [])] });
  const database = await openDatabase({
    url,
    poolSize: config.database.pool_size,
    connectTimeoutMs: config.database.connect_timeout_ms,
    statementTimeoutMs: config.database.statement_timeout_ms,
    onQuery: overrides.onQuery,
    onRoundTrip: overrides.onRoundTrip,
    onPrismaQuery: (sql, seconds) => metrics.query("prisma", statementKind(sql), seconds),
    onIdleConnectionError: (e) => logger.warn("an idle database connection was closed by the server; it will be replaced", { cause: String(e) }),
  });
  if (database.driver.dialect === "postgresql") {
    const pool = database.driver.pool;
    metrics.watchPool(() => ({ max: config.database.pool_size, open: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }));
  }
  let server: RunningServer | undefined;
  let metricsServer: http.Server | undefined;
  let tracing: Tracing | undefined;
  let upkeep: NodeJS.Timeout | undefined;
  let refusalFlush: NodeJS.Timeout | undefined;
  // The one value the issuer, discovery, the JWKS URL and the dev issuer's URL derive from.
  const urls = createPublicUrls(config);
  if (!urls.configured && !config.dev) {
    logger.warn(
      "SERVER.PUBLIC_URL IS NOT SET: the issuer of our tokens and the URLs in discovery are taken from the listening address, " +
        "which other services and clients probably cannot reach; set server.public_url (PUBLIC_URL) to the public HTTPS URL",
      { tokens_issuer: config.tokens.issuer ?? null },
    );
  }

  try {
    if (config.tracing.enabled ?? config.tracing.otlp_endpoint !== undefined) {
      tracing = await startTracing({
        serviceName: config.tracing.service_name,
        otlpEndpoint: config.tracing.otlp_endpoint,
        sampleRatio: config.tracing.sample_ratio,
        exporter: overrides.spanExporter,
      });
    }
    const tracer = tracing?.tracer;
    const kek = keyEncryptionKey(config, logger);
    const keyEncryption = createKeyEncryption(kek);
    const keyRing = await createLocalKeyRing({
      onUnreadable: options.replaceUnreadableSigningKeys === true ? "replace" : "fail",
      issuer: urls.issuer,
      audience: config.tokens.audience,
      ttlSeconds: config.tokens.access_token_ttl_seconds,
      store: createSigningKeyStore(database.client),
      encryption: keyEncryption,
      clock,
      rotateAfterSeconds: config.tokens.signing_key_rotation_days === undefined ? null : config.tokens.signing_key_rotation_days * 86400,
    }).catch((e: unknown) => {
      throw e instanceof SigningKeyUnreadableError ? new ConfigError(kekMismatchMessage(e.kid, config)) : e;
    });

    const providers: ProviderVerification[] = Object.entries(config.providers).map(([name, p]) => ({
      name,
      issuer: p.issuer,
      clientIds: p.client_ids,
      trustedAudiences: p.trusted_audiences,
      algorithms: p.algorithms,
      clockSkewSeconds: p.clock_skew_seconds,
      maxTokenAgeSeconds: p.max_token_age_seconds ?? null,
      requireNonce: p.require_nonce,
      nonceHashing: p.nonce_hashing,
      allowReplay: p.allow_token_reuse,
      claimAllowlist: p.claim_allowlist,
      signup: p.signup,
      linkByEmail: p.link_by_email,
      trustUpstreamMfa: p.trust_upstream_mfa,
      mfaAcrValues: p.mfa_acr_values,
      keys: createRemoteKeySet({
        issuer: p.issuer,
        jwksUri: p.jwks_uri,
        clock,
        fetch: overrides.fetch,
        freshSeconds: p.jwks_fresh_seconds,
        maxStaleSeconds: p.jwks_max_stale_seconds,
        refetchCooldownSeconds: p.jwks_refetch_cooldown_seconds,
        timeoutMs: p.http_timeout_ms,
        onBackgroundError: (e) => logger.warn("JWKS refresh failed", { provider: name, cause: String(e) }),
        onFetch: (ok) => metrics.jwksFetch(name, ok),
      }),
    }));

    const plain = new Map<string, PlainHandler>();
    if (config.dev) {
      mkdirSync(resolve(config.data_dir), { recursive: true, mode: 0o700 });
      const keyFile = join(resolve(config.data_dir), "dev-issuer-key.json");
      const dev = await createDevIssuer({ issuer: urls.devIssuer, clock, keyFile }).catch((e: unknown) => {
        throw new ConfigError(`the dev issuer's key ${keyFile} cannot be used (delete it to start with a new one): ${(e as Error).message}`);
      });
      if (!("dev" in config.providers)) {
        providers.push({
          name: "dev", get issuer() { return dev.issuer; }, clientIds: [DEV_CLIENT_ID], trustedAudiences: [], algorithms: ["RS256"],
          clockSkewSeconds: 60, maxTokenAgeSeconds: null, requireNonce: false, claimAllowlist: {},
          signup: "allow", linkByEmail: "verified", keys: dev.keys,
        });
      }
      plain.set("GET /dev/oidc/.well-known/openid-configuration", async () => ({ status: 200, json: dev.discovery() }));
      plain.set("GET /dev/oidc/jwks", async () => ({ status: 200, json: dev.jwks() }));
      plain.set("POST /dev/oidc/token", async (_req, body) => {
        const r = (await body()) as Partial<DevMintRequest>;
        if (typeof r.sub !== "string" || r.sub === "") {
          return { status: 400, json: { code: "invalid_request", message: "give at least {\"sub\": \"alice\"}" } };
        }
        return { status: 200, json: { id_token: await dev.mint(r as DevMintRequest), provider: "dev" } };
      });
      logger.warn("DEV MODE: the built-in dev OpenID issuer mints ID tokens for anyone; never expose this", { path: "/dev/oidc" });
    }

    const verifier = instrumentMethods(
      overrides.verifier ?? createIdTokenVerifier({ providers, clock, maxTokenBytes: config.id_token.max_bytes }),
      { verify: "verify" },
      { tracer, spanPrefix: "id_token" },
    );
    const accounts = createAccountStore(database.client);
    const opaqueTokens = createOpaqueTokens();
    const mfaStore = createMfaStore(database.client);
    const auditLog = createAuditLog(database.client);
    const sessionStore = createSessionStore(database.client);
    // The hot path: prepared statements on the driver, or the same design on Prisma Client alone.
    // Timed (one histogram observation per statement batch) and, with tracing on, traced.
    const hot = instrumentHotPath(
      config.database.hot_path === "driver"
        ? createHotStore(database)
        : { ...accounts, ...auditLog, ...sessionStore, ...createPrismaSigninReader(database.client, database.dialect) },
      metrics,
      tracer,
      database.dialect,
    );
    const addressLimit = config.rate_limit.signin_failures_per_ip === 0
      ? undefined
      : createAddressLimit({
          max: config.rate_limit.signin_failures_per_ip,
          windowSeconds: config.rate_limit.signin_failure_window_seconds,
          counter: hot,
          clock,
        });
    /** Writes the address limit's tallied refusals: one audit row per address. */
    const flushRefusals = async (): Promise<void> => {
      for (const t of addressLimit?.drainRefusals() ?? []) {
        await auditLog
          .record({
            type: "address.rate_limited",
            code: "rate_limited",
            at: t.last,
            client: { ip: t.ip, userAgent: null, requestId: null, deviceId: null },
            detail: { count: t.count, first_at: t.first.toISOString(), last_at: t.last.toISOString(), rpcs: t.rpcs },
          })
          .catch((e: unknown) => logger.error("audit write failed", { cause: String(e) }));
      }
    };
    const nonces = createNonceService({
      clock,
      sealer: createNonceSealer(kek),
      sha256: sha256Hex,
      ttlSeconds: config.id_token.nonce_ttl_seconds,
      addressLimit,
    });
    const signin = createSigninService({
      clock,
      verifier,
      reader: hot,
      accounts,
      writer: hot,
      audit: auditLog,
      addressLimit,
      nonces,
      accessTokens: keyRing,
      opaqueTokens,
      sessionTtlSeconds: config.tokens.session_ttl_seconds,
      passwordExpiry: passwordExpiryOf(config),
      adaptiveMfa: createAdaptiveMfa({
        history: mfaStore,
        geo: config.risk.geoip_db === undefined ? null : openGeoIp(config.risk.geoip_db),
        ...riskOf(config),
      }),
      challengeTtlSeconds: config.mfa.challenge_ttl_seconds,
      onAuditFailure: (e) => logger.error("audit write failed", { cause: String(e) }),
      events: metrics.events,
    });

    const mfa = createMfaService({
      clock,
      addressLimit,
      store: mfaStore,
      audit: auditLog,
      totp: createTotpEngine({ issuer: config.mfa.totp.issuer, window: config.mfa.totp.window }),
      secrets: createSecretBox(keyEncryption),
      recoveryCodes: createRecoveryCodes(kek),
      opaqueTokens,
      accessTokens: keyRing,
      sessionTtlSeconds: config.tokens.session_ttl_seconds,
      maxAttempts: config.mfa.max_attempts,
      trustedDeviceDays: config.mfa.trusted_device_days,
      recoveryCodeCount: config.mfa.recovery_codes,
      maxCodeFailures: config.mfa.max_code_failures,
      codeFailureWindowSeconds: config.mfa.code_failures_window_seconds,
      passwordExpiry: passwordExpiryOf(config),
      onAuditFailure: (e) => logger.error("audit write failed", { cause: String(e) }),
      events: metrics.events,
    });

    const sessions = createSessionService({
      clock,
      addressLimit,
      store: { ...sessionStore, refresh: hot.refresh, findSession: hot.findSession, findUser: hot.findUser },
      accessTokens: keyRing,
      accessTokenVerifier: keyRing,
      opaqueTokens,
      idleTtlSeconds: config.tokens.session_idle_ttl_seconds,
      passwordExpiry: passwordExpiryOf(config),
    });

    const passwords = createPasswordService({
      clock,
      store: createPasswordStore(database.client),
      hasher: createArgon2PasswordHasher({
        memoryKib: config.password.argon2.memory_kib,
        timeCost: config.password.argon2.time_cost,
        parallelism: config.password.argon2.parallelism,
      }),
      audit: auditLog,
      expiry: passwordExpiryOf(config),
      strength: { minLength: config.password.min_length, maxLength: config.password.max_length },
      revokeOtherSessions: config.password.revoke_other_sessions,
      firstPasswordMaxSigninAgeSeconds: config.password.first_password_max_signin_age_seconds,
      maxFailures: config.password.max_failed_changes,
      failureWindowSeconds: config.password.failed_changes_window_seconds,
      onAuditFailure: (e) => logger.error("audit write failed", { cause: String(e) }),
    });

    // The admin API: the admin tool's service, acting per call for the admin key that made it.
    const adminStore = createAdminStore(database.client);
    const adminFor = (actor: string, client: ClientInfo) =>
      createAdminService({ clock, store: adminStore, expiry: passwordExpiryOf(config), actor, client });
    const adminKeys = createAdminKeyVerifier(
      config.admin.api_keys.map((k) => {
        const sha256 = parseAdminKeyHash(k.sha256);
        if (sha256 === null) throw new ConfigError(`admin.api_keys: the sha256 of ${k.name} is not a SHA-256`);
        return { name: k.name, sha256 };
      }),
    );
    if (adminKeys.enabled) logger.info("admin API enabled", { keys: config.admin.api_keys.map((k) => k.name) });

    // Readiness: the database accepts writes (store/readiness.ts) and we are not draining
    // (rpc/readiness.ts, which /readyz and gRPC health share).
    const probe = createReadinessProbe({
      database,
      isDraining: () => false,
      sqliteFile: url.startsWith("file:") ? sqlitePath(url) : undefined,
      onProbeFailure: (e) => logger.warn("readiness probe failed", { cause: String(e) }),
    });
    let notReadyReason = "database_error";
    const readiness = createReadiness({
      ping: async () => {
        const r = await probe.check();
        if (!r.ready) {
          notReadyReason = r.reason;
          throw new Error(r.reason);
        }
      },
      pollIntervalMs: config.server.health_watch_interval_ms,
    });
    // On the main port unless server.metrics_port gives it one of its own.
    if (config.server.metrics_port === undefined) {
      plain.set("GET /metrics", async () => ({ status: 200, text: await metrics.render(), headers: { "content-type": metrics.contentType } }));
    }
    plain.set("GET /healthz", async () => ({ status: 200, json: { status: "ok" } }));
    if (config.server.web_app ?? config.dev) {
      for (const [route, handler] of webAppRoutes({ devIssuer: config.dev })) plain.set(route, handler);
    }
    plain.set("GET /readyz", async () => {
      const state = await readiness.check();
      if (state === "ready") return { status: 200, json: { status: "ready" } };
      return { status: 503, json: { status: "not_ready", reason: state === "draining" ? "draining" : notReadyReason } };
    });
    plain.set("GET /.well-known/jwks.json", async () => ({
      status: 200,
      json: keyRing.jwks(),
      headers: { "cache-control": "public, max-age=300" },
    }));
    // Only what is served: we issue access tokens (no ID tokens, no OAuth endpoints), so the
    // document names the issuer and where its keys are; nothing else in it would be true.
    plain.set("GET /.well-known/openid-configuration", async () => ({
      status: 200,
      json: { issuer: urls.issuer(), jwks_uri: urls.jwksUri() },
      headers: { "cache-control": "public, max-age=300" },
    }));

    // The REST API's OpenAPI document (generated from proto/), with our one public URL as server.
    const openapi = JSON.parse(readFileSync(new URL("../gen/openapi/openapi.json", import.meta.url), "utf8")) as Record<string, unknown>;
    let openapiServed: Record<string, unknown> | undefined;
    plain.set("GET /openapi.json", async () => ({
      status: 200,
      json: (openapiServed ??= withPlainEndpoints({ ...openapi, servers: [{ url: urls.base() }] }, plain.keys())),
      headers: { "cache-control": "public, max-age=300" },
    }));

    const api = [AuthService, UserService, MfaService, AdminApi];
    // Reflection hands out the whole schema (AdminService included): on in dev mode, elsewhere
    // only where the operator says so.
    const reflection = config.server.reflection ?? config.dev;
    const listener = createHttpHandler({
      routes: (router) => {
        registerAuthService({ signin, sessions, mfa, nonces })(router);
        registerMfaService({ mfa })(router);
        registerUserService({ sessions, passwords })(router);
        registerAdminService({ adminFor })(router);
        registerHealthService({ readiness, services: [...api, Health].map((s) => s.typeName) })(router);
        if (reflection) registerReflectionService({ services: [...api, Health], files: [file_google_rpc_error_details] })(router);
      },
      services: api,
      interceptors: [
        telemetryInterceptor(metrics),
        ...(tracer === undefined ? [] : [tracingInterceptor(tracer)]),
        errorInterceptor(logger),
        // Undecodable bodies and control characters, before any credential is looked at.
        requestChecksInterceptor(),
        // Admin keys only, and only for AdminService; the user auth below never covers it.
        adminInterceptor(adminKeys, { service: AdminApi.typeName }),
        authInterceptor(sessions, {
          required: new Set([UserService.typeName, MfaService.typeName]),
          optional: new Set([`${AuthService.typeName}/${AuthService.method.signOut.name}`]),
        }),
      ],
      logger,
      bodyLimitBytes: config.server.body_limit_bytes,
      corsAllowedOrigins: config.server.cors.allowed_origins,
      corsMaxAgeSeconds: config.server.cors.max_age_seconds,
      trustedProxies: config.server.trusted_proxies,
      plain,
      onMalformed: (protocol) => metrics.malformed(protocol),
    });

    return {
      config,
      database,
      keyRing,
      readiness: probe,
      routes: listener.routes,
      url: () => {
        if (server === undefined) throw new Error("not listening");
        return server.url;
      },
      metricsUrl: () => {
        if (server === undefined) throw new Error("not listening");
        if (metricsServer === undefined) return server.url;
        const { port } = metricsServer.address() as AddressInfo;
        return `http://${config.server.host.includes(":") ? `[${config.server.host}]` : config.server.host}:${port}`;
      },
      async listen() {
        // Upkeep: pick up keys rotated by other replicas or by command; rotate on schedule.
        let lastPurge = 0;
        upkeep = setInterval(() => {
          keyRing.tick().catch((e: unknown) => logger.warn("signing key upkeep failed", { cause: String(e) }));
          // Hourly: challenges and sessions past their life, a day late so that a just-expired
          // session still answers `session_expired` (indexed deletes; any replica may run them).
          if (Date.now() - lastPurge >= 3_600_000) {
            lastPurge = Date.now();
            const before = new Date(clock.now().getTime() - 86_400_000);
            const retentionDays = config.audit.retention_days;
            Promise.all([
              mfaStore.purgeExpiredChallenges(before),
              sessionStore.purgeExpiredSessions(before),
              auditLog.purgeExpiredUses(clock.now()),
              retentionDays === 0 ? 0 : auditLog.purgeAuditBefore(new Date(clock.now().getTime() - retentionDays * 86_400_000)),
            ]).then(
              ([challenges, sessions, usedTokens, auditRows]) => {
                if (challenges + sessions + usedTokens + auditRows > 0) {
                  logger.info("purged expired rows", { challenges, sessions, used_id_tokens: usedTokens, audit_events: auditRows });
                }
              },
              (e: unknown) => logger.warn("purge failed", { cause: String(e) }),
            );
          }
        }, 60_000);
        upkeep.unref();
        // Refusals by the address limit: one audit row per address per interval, with a count.
        refusalFlush = setInterval(() => void flushRefusals(), config.rate_limit.refusal_audit_interval_seconds * 1000);
        refusalFlush.unref();
        server = await startServer({
          host: config.server.host,
          port: config.server.port,
          tls: config.server.tls === undefined ? undefined : { certFile: config.server.tls.cert_file, keyFile: config.server.tls.key_file },
          limits: {
            maxConnections: config.server.max_connections,
            handshakeTimeoutMs: config.server.handshake_timeout_ms,
            idleTimeoutMs: config.server.idle_timeout_ms,
            requestTimeoutMs: config.server.request_timeout_ms,
          },
          listener,
        });
        urls.listening(server.url);
        if (config.server.metrics_port !== undefined) metricsServer = await startMetricsServer(config.server.host, config.server.metrics_port, metrics);
        return server;
      },
      drain() {
        readiness.drain();
      },
      async close() {
        readiness.drain();
        // Open health watches end now; the server would otherwise wait for them until its timeout.
        readiness.close();
        if (upkeep !== undefined) clearInterval(upkeep);
        if (refusalFlush !== undefined) clearInterval(refusalFlush);
        await server?.close(config.server.shutdown_timeout_ms);
        await flushRefusals();
        metricsServer?.closeAllConnections();
        await new Promise((resolve) => (metricsServer === undefined ? resolve(undefined) : metricsServer.close(resolve)));
        await database.close();
        await tracing?.shutdown();
      },
    };
  } catch (e) {
    await database.close();
    await tracing?.shutdown();
    throw e;
  }
}

/** The hot path's store, each operation timed into the query histogram and, with a tracer, traced. */
function instrumentHotPath<T extends HotStore>(store: T, metrics: ServiceMetrics, tracer: Tracer | undefined, dialect: string): T {
  return instrumentMethods(
    store,
    {
      readSignin: "read_signin",
      commitSignin: "commit_signin",
      failuresFromIp: "failures_from_ip",
      refresh: "refresh",
      findSession: "find_session",
      findUser: "find_user",
    } as Parameters<typeof instrumentMethods<T>>[1],
    {
      observe: (operation, seconds) => metrics.query("hot", operation, seconds),
      tracer,
      spanPrefix: "db",
      spanKind: SpanKind.CLIENT,
      attributes: { "db.system.name": dialect },
    },
  );
}

/** The first keyword of a Prisma statement, as a bounded metrics label. */
function statementKind(sql: string): string {
  const word = /^\s*(\w+)/.exec(sql)?.[1]?.toLowerCase();
  return word !== undefined && ["select", "insert", "update", "delete", "begin", "commit", "rollback", "with"].includes(word) ? word : "other";
}

/** GET /metrics alone, on a port of its own (server.metrics_port), for scrapers on a private network. */
async function startMetricsServer(host: string, port: number, metrics: ServiceMetrics): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "/").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    metrics.render().then(
      (text) => res.writeHead(200, { "content-type": metrics.contentType }).end(text),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

/**
 * The OpenAPI document with the plain endpoints beside the API (health, metrics, keys, discovery,
 * the dev issuer) listed too, so it names every route the server answers.
 */
function withPlainEndpoints(doc: Record<string, unknown>, plain: Iterable<string>): Record<string, unknown> {
  const paths = { ...(doc["paths"] as Record<string, Record<string, unknown>>) };
  for (const key of plain) {
    const [method, path] = key.split(" ") as [string, string];
    paths[path] = {
      ...paths[path],
      [method.toLowerCase()]: {
        tags: ["Operations"],
        summary: `${path}: served beside the API (not an RPC)`,
        responses: { "200": { description: "OK" } },
      },
    };
  }
  return { ...doc, paths };
}

/** The risk and MFA-policy parts of the configuration, as the core takes them. */
function riskOf(config: Config): Omit<AdaptiveMfaDeps, "history" | "geo"> {
  const { risk, mfa } = config;
  const policy: MfaPolicy = {
    requireAt: mfa.require_at,
    alwaysForUsers: mfa.always_for_users,
    trustedDeviceMaxLevel: mfa.trusted_device_max_level,
    noFactor: mfa.no_factor,
    recommendedMethods: mfa.recommended_methods,
  };
  return {
    risk: {
      weights: risk.weights,
      thresholds: risk.thresholds,
      recentFailuresThreshold: risk.recent_failures.threshold,
      longInactivityDays: risk.long_inactivity_days,
      maxTravelSpeedKmh: risk.impossible_travel.max_speed_kmh,
      minTravelDistanceKm: risk.impossible_travel.min_distance_km,
    },
    policy,
    ipAllowlist: risk.ip_allowlist,
    ipDenylist: risk.ip_denylist,
    networkPrefix: risk.network_prefix,
    recentFailuresWindowSeconds: risk.recent_failures.window_seconds,
  };
}

/** The password-expiry part of the configuration, as the core takes it. */
function passwordExpiryOf(config: Config): PasswordExpiryPolicy {
  return {
    maxAgeDays: config.password.max_age_days ?? null,
    warningDays: config.password.warning_days,
    graceDays: config.password.grace_days,
  };
}

export interface AdminTool {
  admin: AdminService;
  close(): Promise<void>;
}

/**
 * The admin tool's assembly: the configured database and the admin service over it, nothing that
 * listens. It never migrates (an operator's read must not change the schema) and refuses a
 * SQLite file that does not exist rather than creating an empty one.
 */
export async function createAdminTool(
  config: Config,
  options: { actor: string; clock?: Clock },
): Promise<AdminTool> {
  const url = databaseUrl(config);
  if (url.startsWith("file:") && !existsSync(sqlitePath(url))) {
    throw new ConfigError(`no database at ${sqlitePath(url)}; check database.url / DATABASE_URL, or run \`npm run db:migrate\` first`);
  }
  const database = await openDatabase({
    url,
    poolSize: 2,
    connectTimeoutMs: config.database.connect_timeout_ms,
    statementTimeoutMs: config.database.statement_timeout_ms,
  });
  const client: ClientInfo = { ip: null, userAgent: "admin-cli", requestId: null, deviceId: null };
  const admin = createAdminService({
    clock: options.clock ?? systemClock,
    store: createAdminStore(database.client),
    expiry: passwordExpiryOf(config),
    actor: options.actor,
    client,
  });
  return { admin, close: () => database.close() };
}

/** What to tell an operator whose KEK cannot open the stored signing key: which key, why, the ways out. */
function kekMismatchMessage(kid: string, config: Config): string {
  const source =
    config.tokens.key_encryption_key !== undefined
      ? "tokens.key_encryption_key (KEY_ENCRYPTION_KEY)"
      : `the file ${config.tokens.key_encryption_key_file ?? join(resolve(config.data_dir), "key-encryption-key")}`;
  return (
    `the signing key ${kid} in the database cannot be opened: the key-encryption key (KEK) from ${source} ` +
    "differs from the one that sealed the signing keys (every replica needs the same KEK).\n" +
    "Two ways out:\n" +
    "  1. start with the KEK that sealed them (the one the other replicas or the previous start used), or\n" +
    "  2. if that KEK is lost: `npm run keys:rotate -- --replace-unreadable` with the new KEK seals a new signing key and\n" +
    "     retires the unreadable ones (tokens they signed stay valid until they expire; TOTP secrets and recovery\n" +
    "     codes made under the old KEK cannot be checked any more, so those users enroll again)."
  );
}

/**
 * The key-encryption key for signing keys at rest: from config, else from a file; for the
 * embedded default, a file created on first start in the data directory (mode 0600).
 */
function keyEncryptionKey(config: Config, logger: Logger): Buffer {
  if (config.tokens.key_encryption_key !== undefined) return Buffer.from(config.tokens.key_encryption_key, "base64");
  const file = config.tokens.key_encryption_key_file ?? join(resolve(config.data_dir), "key-encryption-key");
  if (!existsSync(file)) {
    if (config.tokens.key_encryption_key_file !== undefined) {
      throw new Error(`tokens.key_encryption_key_file: ${file} does not exist`);
    }
    mkdirSync(resolve(config.data_dir), { recursive: true, mode: 0o700 });
    writeSecretFile(file, `${randomBytes(32).toString("base64")}\n`);
    logger.warn("created a key-encryption key file; in production configure tokens.key_encryption_key(_file)", { file });
  }
  const kek = Buffer.from(readFileSync(file, "utf8").trim(), "base64");
  if (kek.length !== 32) throw new Error(`${file}: must hold base64 of exactly 32 bytes`);
  return kek;
}
