import { z } from "zod";

const seconds = z.number().int().nonnegative();
const positiveSeconds = z.number().int().positive();

const provider = z
  .object({
    issuer: z.url().describe("Exact `iss` of the provider's ID tokens"),
    client_ids: z.array(z.string().min(1)).min(1).describe("Our client IDs; `aud` must contain one"),
    trusted_audiences: z.array(z.string().min(1)).default([]),
    jwks_uri: z.url().optional().describe("Else found through OIDC discovery"),
    algorithms: z
      .array(z.enum(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"]))
      .min(1)
      .default(["RS256"]),
    clock_skew_seconds: seconds.max(300).default(60),
    max_token_age_seconds: positiveSeconds.optional(),
    signup: z.enum(["allow", "deny"]).default("allow"),
    link_by_email: z.enum(["never", "verified"]).default("never"),
    require_nonce: z.boolean().default(false),
    claim_allowlist: z.record(z.string(), z.array(z.string()).min(1)).default({}),
    jwks_fresh_seconds: positiveSeconds.default(600),
    jwks_max_stale_seconds: positiveSeconds.default(24 * 3600),
    jwks_refetch_cooldown_seconds: seconds.default(30),
    http_timeout_ms: z.number().int().min(100).max(30_000).default(3000),
  })
  .strict();

export const configSchema = z
  .object({
    dev: z.boolean().default(false).describe("Development mode: built-in dev OpenID issuer"),
    data_dir: z.string().default("./data"),
    log_level: z.enum(["debug", "info", "warn", "error"]).default("info"),
    server: z
      .object({
        host: z.string().default("127.0.0.1"),
        port: z.number().int().min(0).max(65535).default(8080),
        public_url: z.url().optional().describe("Base URL clients reach us at"),
        tls: z
          .object({ cert_file: z.string(), key_file: z.string() })
          .strict()
          .optional(),
        body_limit_bytes: z.number().int().min(1024).max(10 * 1024 * 1024).default(64 * 1024),
        shutdown_timeout_ms: z.number().int().min(0).default(10_000),
        trusted_proxies: z.array(z.string()).default([]),
        cors: z
          .object({
            allowed_origins: z.array(z.string()).default([]),
            max_age_seconds: seconds.default(600),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    database: z
      .object({
        url: z.string().optional().describe("file:… (SQLite) or postgresql://…; default SQLite in data_dir"),
        migrate_on_start: z.boolean().default(true),
        pool_size: z.number().int().min(1).max(200).default(10),
        connect_timeout_ms: z.number().int().min(100).default(5000),
        statement_timeout_ms: z.number().int().min(100).default(5000),
      })
      .strict()
      .prefault({}),
    tokens: z
      .object({
        issuer: z.url().optional().describe("`iss` of our tokens; default server.public_url"),
        audience: z.array(z.string().min(1)).min(1).default(["identity"]),
        access_token_ttl_seconds: positiveSeconds.max(24 * 3600).default(1800),
        session_ttl_seconds: positiveSeconds.default(30 * 24 * 3600).describe("Absolute session lifetime"),
        session_idle_ttl_seconds: positiveSeconds.default(7 * 24 * 3600).describe("Session ends unless refreshed within this"),
        signing_key_rotation_days: z.number().positive().optional().describe("Rotate the signing key after this many days"),
        key_encryption_key: z.string().optional().describe("base64 of 32 bytes"),
        key_encryption_key_file: z.string().optional(),
      })
      .strict()
      .prefault({}),
    id_token: z
      .object({ max_bytes: z.number().int().min(512).max(64 * 1024).default(16 * 1024) })
      .strict()
      .prefault({}),
    providers: z
      .record(z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "provider names are lower-case [a-z0-9_-]"), provider)
      .default({}),
  })
  .strict();

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
export type ProviderConfig = Config["providers"][string];
