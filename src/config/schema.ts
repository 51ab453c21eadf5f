import { z } from "zod";
import { admin, oauth } from "./schema-callers.ts";
import { mfa, password, risk, webauthn } from "./schema-factors.ts";
import { provider } from "./schema-providers.ts";
import { database, server, tracing } from "./schema-server.ts";
import { positiveSeconds, seconds } from "./schema-values.ts";

export { ADMIN_KEY_NAME } from "./schema-callers.ts";

/**
 * The one schema of the configuration file. Its sections live beside it: `schema-server.ts`
 * (server, tracing, database), `schema-factors.ts` (password, risk, mfa, webauthn),
 * `schema-callers.ts` (admin, oauth), `schema-providers.ts`, over `schema-values.ts`.
 */
export const configSchema = z
  .object({
    dev: z.boolean().default(false).describe("Development mode: built-in dev OpenID issuer"),
    data_dir: z
      .string()
      .optional()
      .describe(
        "SQLite database, generated KEK, dev issuer key; default ./data in dev mode and for the tools; serving in production needs it set (or database.url and a KEK)",
      ),
    log_level: z.enum(["debug", "info", "warn", "error"]).default("info"),
    server,
    tracing,
    database,
    tokens: z
      .object({
        issuer: z.url().optional().describe("`iss` of our tokens; default server.public_url"),
        audience: z.array(z.string().min(1)).min(1).default(["identity"]),
        access_token_ttl_seconds: positiveSeconds.max(24 * 3600).default(1800),
        session_ttl_seconds: positiveSeconds.default(30 * 24 * 3600).describe("Absolute session lifetime"),
        session_idle_ttl_seconds: positiveSeconds
          .default(7 * 24 * 3600)
          .describe("Session ends unless refreshed within this"),
        refresh_reuse_grace_seconds: seconds
          .max(60)
          .default(0)
          .describe(
            "A spent refresh token repeated this soon by the same client gets the same successor (two tabs); 0: any reuse revokes the session",
          ),
        signing_key_rotation_days: z
          .number()
          .positive()
          .optional()
          .describe("Rotate the signing key after this many days"),
        key_encryption_key: z.string().optional().describe("base64 of 32 bytes"),
        key_encryption_key_file: z.string().optional(),
      })
      .strict()
      .prefault({}),
    rate_limit: z
      .object({
        // Failed sign-ins per client address (behind a proxy: see server.trusted_proxies).
        // Covers every unauthenticated RPC: sign-in, VerifyMfa, refresh, sign-out by refresh token, nonces.
        signin_failures_per_ip: z.number().int().min(0).default(30).describe("0 disables the limit"),
        signin_failure_window_seconds: positiveSeconds.default(300),
        ipv4_prefix: z
          .number()
          .int()
          .min(8)
          .max(32)
          .default(32)
          .describe("Every per-address limit counts an IPv4 client by this prefix (32: the address)"),
        ipv6_prefix: z
          .number()
          .int()
          .min(16)
          .max(128)
          .default(64)
          .describe(
            "Every per-address limit counts an IPv6 client by this prefix (64: one subscriber's network, whose addresses it can rotate)",
          ),
        refusal_audit_interval_seconds: positiveSeconds
          .default(60)
          .describe("Refusals by the limit are written as one audit row per address per interval, with a count"),
      })
      .strict()
      .prefault({}),
    id_token: z
      .object({
        max_bytes: z
          .number()
          .int()
          .min(512)
          .max(64 * 1024)
          .default(16 * 1024),
        nonce_ttl_seconds: positiveSeconds
          .max(3600)
          .default(600)
          .describe("Life of a nonce from POST /auth/id-token/nonce"),
      })
      .strict()
      .prefault({}),
    audit: z
      .object({
        retention_days: z
          .number()
          .int()
          .min(0)
          .default(90)
          .describe("Audit rows older than this are purged hourly; 0 keeps them forever"),
      })
      .strict()
      .prefault({}),
    password,
    risk,
    mfa,
    webauthn,
    admin,
    oauth,
    providers: z
      .record(z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "provider names are lower-case [a-z0-9_-]"), provider)
      .default({}),
  })
  .strict();

export type Config = z.output<typeof configSchema>;
