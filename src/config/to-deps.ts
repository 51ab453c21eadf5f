import { join, resolve } from "node:path";
import type { AdaptiveMfaDeps } from "../core/adaptive-mfa.ts";
import type { PasswordExpiryPolicy } from "../core/password-policy.ts";
import type { MfaPolicy } from "../core/risk.ts";
import type { Config } from "./schema.ts";

/**
 * Config -> what the core and the key loader take: each mapping once, so a renamed key or a new
 * setting changes one function (app.ts and the admin tool both use them).
 */

/** The database URL in force: configured, or the embedded SQLite file in the data directory. */
export function databaseUrl(config: Config): string {
  return config.database.url ?? `file:${join(resolve(config.data_dir), "identity.db")}`;
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
  const file = config.tokens.key_encryption_key_file ?? join(resolve(config.data_dir), "key-encryption-key");
  return { file, createIfMissing: config.tokens.key_encryption_key_file === undefined, describe: `the file ${file}` };
}
