import type { Tracer } from "@opentelemetry/api";
import { ConfigError } from "../config/load.ts";
import type { PublicUrls } from "../config/public-url.ts";
import type { Config } from "../config/schema.ts";
import { addressLimitSettings, keyEncryptionKeySource, keyRingSettings } from "../config/to-deps.ts";
import { type AddressLimit, createAddressLimit } from "../core/address-limit.ts";
import type { AuthEvents } from "../core/auth-events.ts";
import type { Clock } from "../core/clock.ts";
import type { OpaqueTokens } from "../core/ports/sessions.ts";
import type { IdTokenVerifier } from "../core/ports/signin.ts";
import type { Logger } from "../logger.ts";
import { createAccountStore, createAuditLog } from "../store/account-store.ts";
import { createAttemptBudgetStore } from "../store/attempt-budget-store.ts";
import type { Database } from "../store/database.ts";
import { createHotStore } from "../store/hot/hot-store.ts";
import { createPrismaSigninReader } from "../store/hot/prisma.ts";
import { createMfaStore } from "../store/mfa-store.ts";
import { createPasskeyStore } from "../store/passkey-store.ts";
import { createSessionStore } from "../store/session-store.ts";
import { createSigningKeyStore } from "../store/signing-key-store.ts";
import { createTrustedDeviceStore } from "../store/trusted-device-store.ts";
import { instrumentHotPath, instrumentMethods } from "../telemetry/instrument.ts";
import type { ServiceMetrics } from "../telemetry/metrics.ts";
import { createLocalKeyRing, type LocalKeyRing, SigningKeyUnreadableError } from "../tokens/access-tokens.ts";
import type { DevIssuer } from "../tokens/dev-issuer.ts";
import { createIdTokenVerifier } from "../tokens/id-token-verifier.ts";
import {
  createKeyEncryption,
  type KeyEncryption,
  loadKeyEncryptionKey,
  unreadableSigningKeyMessage,
} from "../tokens/key-encryption.ts";
import { configuredProviders, devProvider, openDevIssuer } from "./providers.ts";

/**
 * What the service modules (app/services/) build their core services from: the stores, the key
 * material, the verifier and the limits they share. Each is built once, here and in app.ts.
 */
export interface ServiceParts {
  config: Config;
  clock: Clock;
  logger: Logger;
  database: Database;
  urls: PublicUrls;
  /** The key-encryption key, and the sealing of stored secrets under it. */
  kek: Buffer;
  keyEncryption: KeyEncryption;
  keyRing: LocalKeyRing;
  verifier: IdTokenVerifier;
  opaqueTokens: OpaqueTokens;
  stores: AppStores;
  /** The per-address budget of failed sign-ins; undefined when it is off. */
  addressLimit: AddressLimit | undefined;
  events: AuthEvents;
  onAuditFailure: (e: unknown) => void;
}

/**
 * The key-encryption key and our signing key ring, sealed under it. A key ring the key cannot
 * open is a configuration error naming the key's source (or, asked to, its keys are replaced).
 */
export async function openKeys(
  config: Config,
  deps: { database: Database; clock: Clock; logger: Logger; urls: PublicUrls; replaceUnreadable: boolean },
): Promise<{ kek: Buffer; keyEncryption: KeyEncryption; keyRing: LocalKeyRing }> {
  const source = keyEncryptionKeySource(config);
  const kek = loadKeyEncryptionKey(source, (file) =>
    deps.logger.warn("created a key-encryption key file; in production configure tokens.key_encryption_key(_file)", {
      file,
    }),
  );
  const keyEncryption = createKeyEncryption(kek);
  const keyRing = await createLocalKeyRing({
    ...keyRingSettings(config),
    onUnreadable: deps.replaceUnreadable ? "replace" : "fail",
    issuer: deps.urls.issuer,
    store: createSigningKeyStore(deps.database.client),
    encryption: keyEncryption,
    clock: deps.clock,
  }).catch((e: unknown) => {
    throw e instanceof SigningKeyUnreadableError ? new ConfigError(unreadableSigningKeyMessage(e.kid, source)) : e;
  });
  return { kek, keyEncryption, keyRing };
}

/**
 * The ID-token verifier over the configured providers (in dev mode with the dev issuer, which is
 * returned too: it serves /dev/oidc), timed and traced; a test's own verifier replaces it.
 */
export async function createVerifier(
  config: Config,
  deps: {
    clock: Clock;
    fetch: typeof fetch | undefined;
    logger: Logger;
    metrics: ServiceMetrics;
    urls: PublicUrls;
    tracer: Tracer | undefined;
    override: IdTokenVerifier | undefined;
  },
): Promise<{ verifier: IdTokenVerifier; devIssuer: DevIssuer | undefined }> {
  const { clock, logger } = deps;
  const providers = configuredProviders(config, { clock, fetch: deps.fetch, logger, metrics: deps.metrics });
  const devIssuer = config.dev ? await openDevIssuer(config, deps.urls.devIssuer, clock) : undefined;
  if (devIssuer !== undefined) {
    if (!("dev" in config.providers)) providers.push(devProvider(devIssuer));
    logger.warn("DEV MODE: the built-in dev OpenID issuer mints ID tokens for anyone; never expose this", {
      path: "/dev/oidc",
    });
  }
  const verifier = instrumentMethods(
    deps.override ?? createIdTokenVerifier({ providers, clock, maxTokenBytes: config.id_token.max_bytes }),
    { verify: "verify" },
    { tracer: deps.tracer, spanPrefix: "id_token" },
  );
  return { verifier, devIssuer };
}

export type AppStores = ReturnType<typeof createStores>;

/**
 * The stores more than one service (or the upkeep jobs) use, and the sign-in hot path: prepared
 * statements on the driver, or the same design on Prisma Client alone; timed (one histogram
 * observation per statement batch) and, with tracing on, traced.
 */
export function createStores(config: Config, database: Database, metrics: ServiceMetrics, tracer: Tracer | undefined) {
  const db = database.client;
  const accounts = createAccountStore(db);
  const audit = createAuditLog(db);
  const sessions = createSessionStore(db);
  const hot = instrumentHotPath(
    config.database.hot_path === "driver"
      ? createHotStore(database)
      : { ...accounts, ...audit, ...sessions, ...createPrismaSigninReader(db, database.dialect) },
    metrics,
    tracer,
    database.dialect,
  );
  return {
    accounts,
    audit,
    sessions,
    hot,
    trustedDevices: createTrustedDeviceStore(db),
    mfa: createMfaStore(db),
    passkeys: createPasskeyStore(db),
    // Wrong codes and wrong current passwords: reserved in the database before they are checked.
    attemptBudget: createAttemptBudgetStore(db),
  };
}

/** The per-address budget of failed sign-ins, counted in the hot path's store; undefined when off. */
export function createSigninAddressLimit(config: Config, stores: AppStores, clock: Clock): AddressLimit | undefined {
  const settings = addressLimitSettings(config);
  return settings === null ? undefined : createAddressLimit({ ...settings, counter: stores.hot, clock });
}
