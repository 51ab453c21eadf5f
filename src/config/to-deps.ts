import type { RelyingParty } from "../core/ports/webauthn.ts";
import type { PublicUrls } from "./public-url.ts";
import { join, resolve } from "node:path";
import type { AdaptiveMfaDeps } from "../core/adaptive-mfa.ts";
import { OAUTH_GRANTS, type OAuthClient } from "../core/oauth.ts";
import type { PasswordExpiryPolicy } from "../core/password-policy.ts";
import type { MfaPolicy } from "../core/risk.ts";
import type { Config } from "./schema.ts";

/**
 * Config -> what the core and the key loader take: each mapping once, so a renamed key or a new
 * setting changes one function (app.ts and the admin tool both use them).
 */

/**
 * The data directory when `data_dir` is unset: dev mode's, and the tools' (`migrate`, `admin`,
 * `rotate-keys`), so they find what `npm start` made. Serving in production never falls back to
 * it (see `productionRefusals`): dev data must not become production's by accident.
 */
export const DEV_DATA_DIR = "./data";

/** The data directory in force, absolute. */
export function dataDir(config: Config): string {
  return resolve(config.data_dir ?? DEV_DATA_DIR);
}

/** The database URL in force: configured, or the embedded SQLite file in the data directory. */
export function databaseUrl(config: Config): string {
  return config.database.url ?? `file:${join(dataDir(config), "identity.db")}`;
}

/**
 * Where the database URL in force comes from, as a start-up error names it; and whether its
 * SQLite directory may be created (only the default one, the data directory).
 */
export function databaseSetting(config: Config): { setting: string; createDirectory: boolean } {
  return config.database.url === undefined
    ? { setting: "the SQLite database in data_dir (DATA_DIR),", createDirectory: true }
    : { setting: "DATABASE_URL (database.url)", createDirectory: false };
}

/**
 * Why serving this configuration in production (without dev mode) is refused, one line per
 * reason naming the key; empty when it may start. A production service with no provider can
 * sign nobody in, and one without its own data directory would take dev mode's.
 */
export function productionRefusals(config: Config): string[] {
  const refusals: string[] = [];
  if (Object.keys(config.providers).length === 0) {
    refusals.push(
      "providers: none configured, so nobody could sign in. Add one under `providers:` in the config file " +
        "(issuer and client_ids; see the README's Configuration section and config.example.yaml), or run `npm start` for dev mode and its test issuer",
    );
  }
  const kek = config.tokens.key_encryption_key !== undefined || config.tokens.key_encryption_key_file !== undefined;
  if (config.data_dir === undefined && (config.database.url === undefined || !kek)) {
    refusals.push(
      `data_dir: not set. Production has no default data directory, so dev mode's ${DEV_DATA_DIR} (its users and key-encryption key) never becomes production's. ` +
        "Set DATA_DIR (data_dir) to where the SQLite database and the key-encryption key are kept, or set DATABASE_URL (database.url) and KEY_ENCRYPTION_KEY or KEY_ENCRYPTION_KEY_FILE",
    );
  }
  return refusals;
}

/** The risk and MFA-policy parts of the configuration, as adaptive MFA takes them. */
export function adaptiveMfaSettings(config: Config): Omit<AdaptiveMfaDeps, "history" | "geo"> {
  const { risk, mfa } = config;
  const policy: MfaPolicy = {
    requireAt: mfa.require_at,
    alwaysForUsers: mfa.always_for_users,
    trustedDeviceMaxLevel: mfa.trusted_device_max_level,
    noFactor: mfa.no_factor,
    recommendedMethods: mfa.recommended_methods,
    highRiskMethods: mfa.high_risk_methods,
  };
  return {
    risk: {
      weights: risk.weights,
      thresholds: risk.thresholds,
      recentFailuresThreshold: risk.recent_failures.threshold,
      longInactivityDays: risk.long_inactivity_days,
      maxTravelSpeedKmh: risk.impossible_travel.max_speed_kmh,
      minTravelDistanceKm: risk.impossible_travel.min_distance_km,
      emailLinkMinLevel: risk.email_link_min_level,
    },
    policy,
    ipAllowlist: risk.ip_allowlist,
    ipDenylist: risk.ip_denylist,
    networkPrefix: risk.network_prefix,
    recentFailuresWindowSeconds: risk.recent_failures.window_seconds,
  };
}

/** The password-expiry part of the configuration, as the core takes it. */
export function passwordExpiryPolicy(config: Config): PasswordExpiryPolicy {
  return {
    maxAgeDays: config.password.max_age_days ?? null,
    warningDays: config.password.warning_days,
    graceDays: config.password.grace_days,
  };
}

/**
 * Where the key-encryption key comes from: the configured value, the configured file (which must
 * exist), or the embedded default, a file in the data directory created on first start.
 */
export function keyEncryptionKeySource(
  config: Config,
): { base64: string; describe: string } | { file: string; createIfMissing: boolean; describe: string } {
  if (config.tokens.key_encryption_key !== undefined) {
    return { base64: config.tokens.key_encryption_key, describe: "tokens.key_encryption_key (KEY_ENCRYPTION_KEY)" };
  }
  const file = config.tokens.key_encryption_key_file ?? join(dataDir(config), "key-encryption-key");
  return { file, createIfMissing: config.tokens.key_encryption_key_file === undefined, describe: `the file ${file}` };
}

/**
 * The WebAuthn relying party: `webauthn.rp_id` / `rp_name` / `origins`, each defaulting to what
 * the public URL says (its host name; its origin). Asked per ceremony, since without
 * `server.public_url` the URL is known only once the server listens.
 */
export function relyingParty(config: Config, urls: PublicUrls): () => RelyingParty {
  const { rp_id, rp_name, origins } = config.webauthn;
  return () => {
    const base = rp_id === undefined || origins.length === 0 ? new URL(urls.base()) : null;
    return {
      id: rp_id ?? base!.hostname,
      name: rp_name,
      origins: origins.length > 0 ? origins.map((o) => new URL(o).origin) : [base!.origin],
    };
  };
}

/**
 * The OAuth clients (`oauth.clients`), with dev mode's public client `dev` unless one is
 * configured. An audience a client may ask for must be one we issue tokens for (tokens.audience):
 * anything else is a configuration error, named here rather than found by a refused request.
 */
export function oauthClients(config: Config): Map<string, OAuthClient> {
  const clients = new Map<string, OAuthClient>();
  for (const [id, c] of Object.entries(config.oauth.clients)) {
    const audiences = c.audiences ?? config.tokens.audience;
    const unknown = audiences.filter((a) => !config.tokens.audience.includes(a));
    if (unknown.length > 0)
      throw new Error(`oauth.clients.${id}.audiences: ${unknown.join(", ")} not in tokens.audience`);
    const hash = c.client_secret_sha256;
    clients.set(id, {
      id,
      authMethod: c.token_endpoint_auth_method,
      secretSha256: hash === undefined ? null : Buffer.from(hash, hash.length === 64 ? "hex" : "base64url"),
      grants: new Set(c.grant_types),
      audiences: [...audiences],
    });
  }
  if (config.dev && !clients.has("dev")) {
    clients.set("dev", {
      id: "dev",
      authMethod: "none",
      secretSha256: null,
      grants: new Set(OAUTH_GRANTS),
      audiences: [...config.tokens.audience],
    });
  }
  return clients;
}

/**
 * The private_key_jwt clients' public keys (`oauth.clients.*.jwks` inline, or `jwks_uri`), by
 * client ID, as the client-assertion check takes them.
 */
export function oauthClientKeys(config: Config): Map<string, OAuthClientKeys> {
  const keys = new Map<string, OAuthClientKeys>();
  for (const [id, c] of Object.entries(config.oauth.clients)) {
    if (c.jwks !== undefined) keys.set(id, { jwks: c.jwks });
    else if (c.jwks_uri !== undefined) keys.set(id, { jwksUri: c.jwks_uri });
  }
  return keys;
}

/** A private_key_jwt client's public keys: inline, or where it publishes them. */
export type OAuthClientKeys = { jwks: { keys: Record<string, unknown>[] } } | { jwksUri: string };

const DAY_SECONDS = 86400;

/** Our signing key ring: whom its access tokens are for, how long they live, when a key retires. */
export function keyRingSettings(config: Config) {
  const { tokens } = config;
  return {
    audience: tokens.audience,
    ttlSeconds: tokens.access_token_ttl_seconds,
    rotateAfterSeconds:
      tokens.signing_key_rotation_days === undefined ? null : tokens.signing_key_rotation_days * DAY_SECONDS,
  };
}

/** The per-address budget of failed sign-ins (`rate_limit.signin_failure*`); null when it is off (0). */
export function addressLimitSettings(config: Config): { max: number; windowSeconds: number } | null {
  const { rate_limit } = config;
  if (rate_limit.signin_failures_per_ip === 0) return null;
  return { max: rate_limit.signin_failures_per_ip, windowSeconds: rate_limit.signin_failure_window_seconds };
}

/** Sign-in's settings (the nonces', adaptive MFA's and the key ring's come apart). */
export function signinSettings(config: Config) {
  return {
    sessionTtlSeconds: config.tokens.session_ttl_seconds,
    passwordExpiry: passwordExpiryPolicy(config),
    challengeTtlSeconds: config.mfa.challenge_ttl_seconds,
  };
}

/** The sign-in nonces' lifetime. */
export function nonceSettings(config: Config): { ttlSeconds: number } {
  return { ttlSeconds: config.id_token.nonce_ttl_seconds };
}

/** The MFA service's settings (`mfa.*`, and the session lifetime a completed challenge starts). */
export function mfaSettings(config: Config) {
  const { mfa } = config;
  return {
    sessionTtlSeconds: config.tokens.session_ttl_seconds,
    maxAttempts: mfa.max_attempts,
    trustedDeviceDays: mfa.trusted_device_days,
    recoveryCodeCount: mfa.recovery_codes,
    maxCodeFailures: mfa.max_code_failures,
    codeFailureWindowSeconds: mfa.code_failures_window_seconds,
    stepUpMaxAgeSeconds: mfa.step_up_max_age_seconds,
    passwordExpiry: passwordExpiryPolicy(config),
  };
}

/** TOTP as the authenticator apps see it: the issuer they show, the steps of clock skew allowed. */
export function totpSettings(config: Config): { issuer: string; window: number } {
  return { issuer: config.mfa.totp.issuer, window: config.mfa.totp.window };
}

/** Sessions: idle expiry, the refresh-reuse grace, password expiry at refresh. */
export function sessionSettings(config: Config) {
  return {
    idleTtlSeconds: config.tokens.session_idle_ttl_seconds,
    refreshReuseGraceSeconds: config.tokens.refresh_reuse_grace_seconds,
    passwordExpiry: passwordExpiryPolicy(config),
  };
}

/** Argon2id's cost (`password.argon2.*`). */
export function argon2Settings(config: Config): { memoryKib: number; timeCost: number; parallelism: number } {
  const { argon2 } = config.password;
  return { memoryKib: argon2.memory_kib, timeCost: argon2.time_cost, parallelism: argon2.parallelism };
}

/** The password service's settings (`password.*`): strength, expiry, and the budget of wrong current passwords. */
export function passwordSettings(config: Config) {
  const { password } = config;
  return {
    expiry: passwordExpiryPolicy(config),
    strength: { minLength: password.min_length, maxLength: password.max_length },
    revokeOtherSessions: password.revoke_other_sessions,
    firstPasswordMaxSigninAgeSeconds: password.first_password_max_signin_age_seconds,
    maxFailures: password.max_failed_changes,
    failureWindowSeconds: password.failed_changes_window_seconds,
  };
}
