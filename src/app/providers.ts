import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { dataDir } from "../config/to-deps.ts";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../logger.ts";
import type { ServiceMetrics } from "../telemetry/metrics.ts";
import { createDevIssuer, DEV_CLIENT_ID, type DevIssuer } from "../tokens/dev-issuer.ts";
import type { ProviderVerification } from "../tokens/id-token-verifier.ts";
import { createRemoteKeySet } from "../tokens/remote-key-set.ts";

/** The configured providers as the ID-token verifier takes them, each with its own remote key set. */
export function configuredProviders(
  config: Config,
  deps: { clock: Clock; fetch?: typeof fetch | undefined; logger: Logger; metrics: Pick<ServiceMetrics, "jwksFetch"> },
): ProviderVerification[] {
  return Object.entries(config.providers).map(([name, p]) => ({
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
      clock: deps.clock,
      fetch: deps.fetch,
      freshSeconds: p.jwks_fresh_seconds,
      maxStaleSeconds: p.jwks_max_stale_seconds,
      refetchCooldownSeconds: p.jwks_refetch_cooldown_seconds,
      timeoutMs: p.http_timeout_ms,
      onBackgroundError: (e) => deps.logger.warn("JWKS refresh failed", { provider: name, cause: String(e) }),
      onFetch: (ok) => deps.metrics.jwksFetch(name, ok),
    }),
  }));
}

/**
 * The built-in dev OpenID issuer (dev mode only), its key kept in the data directory so minted
 * tokens survive a restart. A damaged key file stops the start naming the file and the way out.
 */
export async function openDevIssuer(config: Config, issuer: () => string, clock: Clock): Promise<DevIssuer> {
  mkdirSync(dataDir(config), { recursive: true, mode: 0o700 });
  const keyFile = join(dataDir(config), "dev-issuer-key.json");
  return createDevIssuer({ issuer, clock, keyFile }).catch((e: unknown) => {
    throw new ConfigError(
      `the dev issuer's key ${keyFile} cannot be used (delete it to start with a new one): ${(e as Error).message}`,
    );
  });
}

/** Provider `dev`: the dev issuer's tokens, for any test user, sign-up allowed. */
export function devProvider(dev: DevIssuer): ProviderVerification {
  return {
    name: "dev",
    get issuer() {
      return dev.issuer;
    },
    clientIds: [DEV_CLIENT_ID],
    trustedAudiences: [],
    algorithms: ["RS256"],
    clockSkewSeconds: 60,
    maxTokenAgeSeconds: null,
    requireNonce: false,
    claimAllowlist: {},
    signup: "allow",
    linkByEmail: "verified",
    keys: dev.keys,
  };
}
