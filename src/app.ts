import type * as http from "node:http";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import { ConfigError } from "./config/load.ts";
import { createPublicUrls } from "./config/public-url.ts";
import type { Config } from "./config/schema.ts";
import { adaptiveMfaSettings, databaseSetting, databaseUrl, keyEncryptionKeySource, oauthClients, passwordExpiryPolicy, relyingParty } from "./config/to-deps.ts";
import { createAdaptiveMfa } from "./core/adaptive-mfa.ts";
import { createAddressLimit } from "./core/address-limit.ts";
import { type Clock, systemClock } from "./core/clock.ts";
import { createMfaService } from "./core/mfa.ts";
import { createNonceService } from "./core/nonces.ts";
import { createPasswordService } from "./core/passwords.ts";
import type { IdTokenVerifier } from "./core/ports/signin.ts";
import { createSessionService } from "./core/sessions.ts";
import { createSigninService } from "./core/signin.ts";
import { openGeoIp } from "./geo/geoip.ts";
import type { Logger } from "./logger.ts";
import { AdminService as AdminApi } from "../gen/pb/identity/v1/admin_service_pb.ts";
import { AuthService } from "../gen/pb/identity/v1/auth_service_pb.ts";
import { MfaService } from "../gen/pb/identity/v1/mfa_service_pb.ts";
import { UserService } from "../gen/pb/identity/v1/user_service_pb.ts";
import { adminInterceptor } from "./rpc/admin-interceptor.ts";
import { authInterceptor } from "./rpc/auth-interceptor.ts";
import { errorInterceptor } from "./rpc/errors.ts";
import { createHttpHandler } from "./rpc/http-handler.ts";
import { createPlainRoutes } from "./rpc/plain-routes.ts";
import { createOAuthRoutes } from "./rpc/oauth-routes.ts";
import { createOAuthService } from "./core/oauth.ts";
import { createClientSecretCheck } from "./tokens/client-secrets.ts";
import { type ClientKeys, createClientAssertionCheck } from "./tokens/client-assertions.ts";
import { createSingleUseStore } from "./store/single-use-store.ts";
import { requestChecksInterceptor } from "./rpc/request-checks.ts";
import { createRoutes } from "./rpc/routes.ts";
import { type RunningServer, startServer } from "./rpc/server.ts";
import { telemetryInterceptor, tracingInterceptor } from "./rpc/telemetry-interceptor.ts";
import { createAccountStore, createAuditLog } from "./store/account-store.ts";
import { type Database, openDatabase, reachDatabase, sqlitePath } from "./store/database.ts";
import { createHotStore } from "./store/hot/hot-store.ts";
import { createPrismaSigninReader } from "./store/hot/prisma.ts";
import { checkSqliteIntegrity } from "./store/integrity-check.ts";
import { migrate } from "./store/migrate.ts";
import { createMfaStore } from "./store/mfa-store.ts";
import { createPasskeyStore } from "./store/passkey-store.ts";
import { createWebauthnCeremonies } from "./webauthn/ceremonies.ts";
import { createPasskeyService } from "./core/passkeys.ts";
import { createPasswordStore } from "./store/password-store.ts";
import { createAttemptBudgetStore } from "./store/attempt-budget-store.ts";
import type { ReadinessProbe } from "./store/readiness.ts";
import { createSessionStore } from "./store/session-store.ts";
import { createTrustedDeviceStore } from "./store/trusted-device-store.ts";
import { createSigningKeyStore } from "./store/signing-key-store.ts";
import { instrumentHotPath, instrumentMethods } from "./telemetry/instrument.ts";
import { closeMetricsServer, metricsServerUrl, startMetricsServer } from "./telemetry/metrics-server.ts";
import { createMetrics, type MetricsJson, statementKind } from "./telemetry/metrics.ts";
import { startTracing, type Tracing } from "./telemetry/tracing.ts";
import { createLocalKeyRing, type LocalKeyRing, SigningKeyUnreadableError } from "./tokens/access-tokens.ts";
import { createIdTokenVerifier } from "./tokens/id-token-verifier.ts";
import { createKeyEncryption, loadKeyEncryptionKey, unreadableSigningKeyMessage } from "./tokens/key-encryption.ts";
import { createNonceSealer } from "./tokens/nonce-sealer.ts";
import { createOpaqueTokens } from "./tokens/opaque-tokens.ts";
import { createArgon2PasswordHasher } from "./tokens/password-hasher.ts";
import { createRecoveryCodes } from "./tokens/recovery-codes.ts";
import { createSecretBox } from "./tokens/secret-box.ts";
import { sha256Hex } from "./tokens/sha256.ts";
import { createTotpEngine } from "./tokens/totp.ts";
import { createAdminApi } from "./app/admin.ts";
import { configuredProviders, devProvider, openDevIssuer } from "./app/providers.ts";
import type { ClusterPeer } from "./app/cluster.ts";
import { createAppReadiness } from "./app/readiness.ts";
import { createRefusalFlusher, startUpkeep } from "./app/upkeep.ts";

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
 * maps settings, app/ holds the providers, the admin API and the upkeep jobs, rpc/plain-routes.ts
 * the plain endpoints, rpc/routes.ts the services). Tests pass overrides instead of patching modules.
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
  const url = databaseUrl(config);
  await reachDatabase(url, { ...databaseSetting(config), connectTimeoutMs: config.database.connect_timeout_ms });
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
    sqliteWalMaxBytes: config.database.sqlite.wal_max_bytes,
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
  let stopUpkeep: (() => void) | undefined;
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
    const kekSource = keyEncryptionKeySource(config);
    const kek = loadKeyEncryptionKey(kekSource, (file) =>
      logger.warn("created a key-encryption key file; in production configure tokens.key_encryption_key(_file)", { file }),
    );
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
      throw e instanceof SigningKeyUnreadableError ? new ConfigError(unreadableSigningKeyMessage(e.kid, kekSource)) : e;
    });

    const providers = configuredProviders(config, { clock, fetch: overrides.fetch, logger, metrics });
    const devIssuer = config.dev ? await openDevIssuer(config, urls.devIssuer, clock) : undefined;
    if (devIssuer !== undefined) {
      if (!("dev" in config.providers)) providers.push(devProvider(devIssuer));
      logger.warn("DEV MODE: the built-in dev OpenID issuer mints ID tokens for anyone; never expose this", { path: "/dev/oidc" });
    }
    const verifier = instrumentMethods(
      overrides.verifier ?? createIdTokenVerifier({ providers, clock, maxTokenBytes: config.id_token.max_bytes }),
      { verify: "verify" },
      { tracer, spanPrefix: "id_token" },
    );

    const accounts = createAccountStore(database.client);
    const opaqueTokens = createOpaqueTokens(kek);
    const mfaStore = createMfaStore(database.client);
    const passkeyStore = createPasskeyStore(database.client);
    const webauthn = {
      store: passkeyStore,
      ceremonies: createWebauthnCeremonies(),
      rp: relyingParty(config, urls),
      ceremonyTtlSeconds: config.webauthn.challenge_ttl_seconds,
    };
    const auditLog = createAuditLog(database.client);
    const sessionStore = createSessionStore(database.client);
    const trustedDeviceStore = createTrustedDeviceStore(database.client);
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
    const flushRefusals = createRefusalFlusher({ addressLimit, audit: auditLog, logger });
    const onAuditFailure = (e: unknown) => logger.error("audit write failed", { cause: String(e) });
    const passwordExpiry = passwordExpiryPolicy(config);

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
      passwordExpiry,
      adaptiveMfa: createAdaptiveMfa({
        history: mfaStore,
        geo: config.risk.geoip_db === undefined ? null : openGeoIp(config.risk.geoip_db),
        ...adaptiveMfaSettings(config),
      }),
      challengeTtlSeconds: config.mfa.challenge_ttl_seconds,
      onAuditFailure,
      events: metrics.events,
    });
    // Wrong codes and wrong current passwords: reserved in the database before they are checked.
    const attemptBudget = createAttemptBudgetStore(database.client);
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
      budget: attemptBudget,
      stepUpMaxAgeSeconds: config.mfa.step_up_max_age_seconds,
      passwordExpiry,
      onAuditFailure,
      events: metrics.events,
      passkeys: webauthn,
    });
    const passkeys = createPasskeyService({ clock, users: mfaStore, stepUpMaxAgeSeconds: config.mfa.step_up_max_age_seconds, audit: auditLog, onAuditFailure, events: metrics.events, ...webauthn });
    const sessions = createSessionService({
      clock,
      addressLimit,
      store: { ...sessionStore, refresh: hot.refresh, findSession: hot.findSession, findUser: hot.findUser },
      accessTokens: keyRing,
      accessTokenVerifier: keyRing,
      opaqueTokens,
      idleTtlSeconds: config.tokens.session_idle_ttl_seconds,
      refreshReuseGraceSeconds: config.tokens.refresh_reuse_grace_seconds,
      passwordExpiry,
      trustedDevices: trustedDeviceStore,
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
      expiry: passwordExpiry,
      strength: { minLength: config.password.min_length, maxLength: config.password.max_length },
      revokeOtherSessions: config.password.revoke_other_sessions,
      firstPasswordMaxSigninAgeSeconds: config.password.first_password_max_signin_age_seconds,
      maxFailures: config.password.max_failed_changes,
      failureWindowSeconds: config.password.failed_changes_window_seconds,
      budget: attemptBudget,
      onAuditFailure,
    });
    const { adminFor, adminKeys } = createAdminApi(config, { database, clock, logger });

    const { probe, readiness, notReadyReason } = createAppReadiness({
      database,
      databaseUrl: url,
      logger,
      pollIntervalMs: config.server.health_watch_interval_ms,
      cluster: options.cluster,
    });
    // What GET /metrics serves: this process's metrics, or in a cluster every worker's.
    const cluster = options.cluster;
    const servedMetrics = cluster === undefined ? metrics : { contentType: metrics.contentType, render: () => cluster.metrics() };

    const listener = createHttpHandler({
      routes: createRoutes({
        signin, sessions, mfa, passkeys, nonces, passwords, adminFor, readiness,
        // Reflection hands out the whole schema (AdminService included): on in dev mode,
        // elsewhere only where the operator says so.
        reflection: config.server.reflection ?? config.dev,
      }),
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
      maxRequestsPerAddress: config.server.max_requests_per_address,
      addressPrefixes: { ipv4: config.rate_limit.ipv4_prefix, ipv6: config.rate_limit.ipv6_prefix },
      plain: createPlainRoutes({
        urls,
        jwks: () => keyRing.jwks(),
        readiness,
        notReadyReason,
        // On the main port unless server.metrics_port gives it one of its own.
        metrics: config.server.metrics_port === undefined ? servedMetrics : undefined,
        devIssuer,
        webApp: config.server.web_app ?? config.dev,
        // The OAuth door: the same sign-in, refresh and VerifyMfa services as the RPCs.
        oauth: createOAuthRoutes({
          oauth: createOAuthService({
            clock,
            clients: oauthClients(config),
            secrets: createClientSecretCheck(),
            assertions: createClientAssertionCheck({
              keys: new Map(Object.entries(config.oauth.clients).flatMap(([id, c]): [string, ClientKeys][] =>
                c.jwks !== undefined ? [[id, { jwks: c.jwks }]] : c.jwks_uri !== undefined ? [[id, { jwksUri: c.jwks_uri }]] : [])),
              audiences: () => [`${urls.base()}/oauth2/token`, urls.issuer()],
            }),
            marks: createSingleUseStore(database.client),
            addressLimit,
            signin,
            sessions,
            mfa,
          }),
          urls,
          logger,
        }),
      }),
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
        return metricsServer === undefined ? server.url : metricsServerUrl(metricsServer, config.server.host);
      },
      async listen() {
        stopUpkeep = startUpkeep({
          keyRing,
          purgers: {
            challenges: {
              // MFA challenges and the passkey ceremonies opened for them (or for registrations).
              purgeExpiredChallenges: async (before) =>
                (await mfaStore.purgeExpiredChallenges(before)) + (await passkeyStore.purgeExpiredCeremonies(before)),
            },
            sessions: sessionStore,
            trustedDevices: trustedDeviceStore,
            audit: auditLog,
          },
          clock,
          logger,
          auditRetentionDays: config.audit.retention_days,
          flushRefusals,
          refusalIntervalSeconds: config.rate_limit.refusal_audit_interval_seconds,
        });
        server = await startServer({
          host: config.server.host,
          port: config.server.port,
          tls: config.server.tls === undefined ? undefined : { certFile: config.server.tls.cert_file, keyFile: config.server.tls.key_file },
          reusePort: options.cluster !== undefined && config.server.worker_balancing === "kernel",
          limits: {
            maxConnections: config.server.max_connections,
            maxConnectionsPerAddress: config.server.max_connections_per_address ?? 64,
            maxStreamsPerConnection: config.server.max_streams_per_connection,
            handshakeTimeoutMs: config.server.handshake_timeout_ms,
            idleTimeoutMs: config.server.idle_timeout_ms,
            requestTimeoutMs: config.server.request_timeout_ms,
          },
          listener,
          connectionKey: listener.connectionKey,
        });
        urls.listening(server.url);
        if (config.server.metrics_port !== undefined) metricsServer = await startMetricsServer(config.server.host, config.server.metrics_port, servedMetrics);
        return server;
      },
      localMetrics: () => metrics.json(),
      drain() {
        readiness.drain();
      },
      async close(options) {
        readiness.drain();
        // Open health watches end now; the server would otherwise wait for them until its timeout.
        readiness.close();
        stopUpkeep?.();
        await server?.close(config.server.shutdown_timeout_ms, options?.hurry);
        await flushRefusals();
        if (metricsServer !== undefined) await closeMetricsServer(metricsServer);
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
