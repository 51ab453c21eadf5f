import { isIP } from "node:net";
import { z } from "zod";
import { TENANT_ID_PLACEHOLDER } from "../core/model.ts";

/**
 * What is wrong with a database URL's scheme, or undefined when it is `file:` or
 * `postgres(ql)://`. Never echoes more than the scheme (the rest may hold a password); a bare
 * path (no scheme) is shown, with the `file:` it lacks.
 */
function databaseUrlProblem(url: string): string | undefined {
  if (/^postgres(ql)?:\/\//.test(url) || url.startsWith("file:")) return undefined;
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1];
  if (scheme === undefined || /^[a-z]$/i.test(scheme)) return `"${url}" is a path, not a URL: write file:${url} for SQLite`;
  if (/^postgres(ql)?$/i.test(scheme)) return `${scheme}: needs // and a host: postgresql://user@host:5432/database`;
  return `got ${scheme}:, which is not supported: use file:PATH (SQLite) or postgresql://user@host:5432/database`;
}

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
    trust_upstream_mfa: z
      .boolean()
      .default(false)
      .describe("An ID token saying the provider did MFA (amr `mfa`, two factor kinds, or mfa_acr_values) lowers the risk"),
    mfa_acr_values: z.array(z.string().min(1)).default([]).describe("`acr` values of this provider that mean MFA happened"),
    require_nonce: z
      .union([z.boolean(), z.literal("server")])
      .default(false)
      .describe("true: the request must send the token's nonce; server: the nonce must also be one this service issued (POST /auth/id-token/nonce), single use"),
    allow_token_reuse: z
      .boolean()
      .default(false)
      .describe("Accept one ID token for several sign-ins (default: each token once, id_token_replayed after)"),
    nonce_hashing: z.enum(["none", "sha256"]).default("none").describe("sha256: the token holds SHA-256(hex) of the nonce"),
    claim_allowlist: z.record(z.string(), z.array(z.string()).min(1)).default({}),
    jwks_fresh_seconds: positiveSeconds.default(600),
    jwks_max_stale_seconds: positiveSeconds.default(24 * 3600),
    jwks_refetch_cooldown_seconds: seconds.default(30),
    http_timeout_ms: z.number().int().min(100).max(30_000).default(3000),
  })
  .strict()
  .superRefine((p, ctx) => {
    // A multi-tenant issuer without a tenant allowlist would let every tenant in: fail closed.
    if (p.issuer.includes(TENANT_ID_PLACEHOLDER) && (p.claim_allowlist["tid"] ?? []).length === 0) {
      ctx.addIssue({
        code: "custom",
        path: ["claim_allowlist", "tid"],
        message: `an issuer with ${TENANT_ID_PLACEHOLDER} needs claim_allowlist.tid listing the tenants allowed to sign in`,
      });
    }
    if (p.issuer.includes(TENANT_ID_PLACEHOLDER) && p.jwks_uri === undefined) {
      ctx.addIssue({ code: "custom", path: ["jwks_uri"], message: `an issuer with ${TENANT_ID_PLACEHOLDER} needs jwks_uri` });
    }
  });

/** OWASP's Argon2id floor, as memory × passes (19 MiB × 2, 12 MiB × 3, 9 MiB × 4, 7 MiB × 5). */
const ARGON2_MIN_MEMORY_TIME_KIB = 7168 * 5;

const password = z
  .object({
    argon2: z
      .object({
        memory_kib: z.number().int().min(7168).max(4 * 1024 * 1024).default(19_456),
        time_cost: z.number().int().min(1).max(50).default(2),
        parallelism: z.number().int().min(1).max(16).default(1),
      })
      .strict()
      .prefault({})
      .refine((a) => a.memory_kib * a.time_cost >= ARGON2_MIN_MEMORY_TIME_KIB, {
        message: `memory_kib × time_cost must be at least ${ARGON2_MIN_MEMORY_TIME_KIB} (OWASP's Argon2id minimum)`,
      }),
    max_age_days: z.number().int().positive().max(3650).optional().describe("Local passwords expire after this; unset: never"),
    warning_days: z.number().int().nonnegative().default(14).describe("Warn (`expiring`) this many days before expiry"),
    grace_days: z.number().int().nonnegative().default(0).describe("After expiry, `expired_grace` this long, then `expired`"),
    min_length: z.number().int().min(8).max(128).default(12),
    max_length: z.number().int().min(16).max(1024).default(128),
    revoke_other_sessions: z.boolean().default(true).describe("A password change ends the user's other sessions"),
    first_password_max_signin_age_seconds: positiveSeconds
      .max(24 * 3600)
      .default(600)
      .describe("Setting a first password needs a sign-in at most this old"),
    max_failed_changes: z.number().int().min(1).max(100).default(5).describe("Wrong current passwords per window"),
    failed_changes_window_seconds: positiveSeconds.default(900),
  })
  .strict()
  .prefault({})
  .superRefine((p, ctx) => {
    if (p.min_length > p.max_length) {
      ctx.addIssue({ code: "custom", path: ["min_length"], message: "must not exceed password.max_length" });
    }
    if (p.max_age_days !== undefined && p.warning_days >= p.max_age_days) {
      ctx.addIssue({ code: "custom", path: ["warning_days"], message: "must be less than password.max_age_days" });
    }
  });

const mfaMethod = z.enum(["totp", "recovery_code", "webauthn"]);
const weight = z.number().int().min(-100).max(100);

/** An address or a CIDR block, IPv4 or IPv6. */
const cidr = z.string().refine(
  (v) => {
    const [address, bits, extra] = v.split("/");
    const version = isIP(address ?? "");
    if (version === 0 || extra !== undefined) return false;
    if (bits === undefined) return true;
    return /^\d{1,3}$/.test(bits) && Number(bits) <= (version === 4 ? 32 : 128);
  },
  { message: "must be an IP address or a CIDR block (203.0.113.0/24, 2001:db8::/32)" },
);

/** Risk assessment of every sign-in (src/core/risk.ts): signals, weights, levels. */
const risk = z
  .object({
    geoip_db: z.string().min(1).optional().describe("MaxMind .mmdb (Country: countries; City: also travel); unset: no geo signals"),
    thresholds: z
      .object({ medium: z.number().int().min(1).max(100).default(30), high: z.number().int().min(1).max(100).default(60) })
      .strict()
      .prefault({})
      .refine((t) => t.medium < t.high, { message: "medium must be below high" }),
    weights: z
      .object({
        new_device: weight.default(30),
        new_network: weight.default(15),
        new_country: weight.default(25),
        impossible_travel: weight.default(60),
        ip_denylisted: weight.default(60),
        ip_allowlisted: weight.default(-25),
        recent_failures: weight.default(20),
        long_inactivity: weight.default(15),
        new_identity_link: weight.default(25),
        upstream_mfa: weight.default(-40),
      })
      .strict()
      .prefault({}),
    ip_allowlist: z.array(cidr).default([]).describe("Networks whose sign-ins are less risky (offices, VPN egress)"),
    ip_denylist: z.array(cidr).default([]).describe("Networks whose sign-ins are more risky"),
    recent_failures: z
      .object({ threshold: z.number().int().min(1).default(3), window_seconds: positiveSeconds.default(3600) })
      .strict()
      .prefault({}),
    long_inactivity_days: z.number().int().positive().default(90),
    impossible_travel: z
      .object({ max_speed_kmh: z.number().positive().default(1000), min_distance_km: z.number().nonnegative().default(300) })
      .strict()
      .prefault({}),
    network_prefix: z
      .object({ ipv4: z.number().int().min(8).max(32).default(24), ipv6: z.number().int().min(16).max(128).default(48) })
      .strict()
      .prefault({}),
    email_link_min_level: z
      .enum(["low", "medium", "high"])
      .default("medium")
      .describe("A sign-in that links a new identity to an account by verified e-mail is at least this risky"),
  })
  .strict()
  .prefault({});

/** Passkeys (src/core/passkeys.ts; the relying party: src/config/to-deps.ts relyingParty). */
const webauthn = z
  .object({
    rp_id: z
      .string()
      .regex(/^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/, "a host name (lower case), no scheme or port")
      .optional()
      .describe("The domain passkeys are scoped to; default: the public URL's host. A parent domain serves its subdomains"),
    rp_name: z.string().min(1).max(64).default("Identity").describe("Shown by the browser when a passkey is created"),
    origins: z
      .array(z.url())
      .default([])
      .describe("Origins whose pages may run the ceremonies (scheme://host[:port]); default: the public URL's origin"),
    challenge_ttl_seconds: z.number().int().min(30).max(600).default(300).describe("Life of a registration or sign-in ceremony"),
  })
  .strict()
  .prefault({});

/** Adaptive MFA policy, challenges and factors (src/core/risk.ts decideMfa, src/core/mfa.ts). */
const mfa = z
  .object({
    require_at: z.enum(["low", "medium", "high", "never"]).default("medium").describe("Lowest risk level that requires MFA"),
    always_for_users: z.array(z.string().regex(/^usr_[0-9a-z]+$/, "user ids look like usr_…")).default([]),
    no_factor: z
      .enum(["allow", "deny", "deny_high_risk"])
      .default("deny_high_risk")
      .describe("MFA required but no factor enrolled: let in with mfa_enrollment_required, refuse, or refuse only at high risk"),
    challenge_ttl_seconds: z.number().int().min(30).max(3600).default(300),
    max_attempts: z.number().int().min(1).max(20).default(5),
    trusted_device_days: z.number().int().min(0).max(365).default(30).describe("Lifetime of a device credential (VerifyMfa trust_device); 0: none is issued"),
    trusted_device_max_level: z.enum(["none", "low", "medium", "high"]).default("medium").describe("A trusted device skips MFA up to this level"),
    recommended_methods: z
      .object({
        low: z.array(mfaMethod).default([]),
        medium: z.array(mfaMethod).default(["totp"]),
        high: z.array(mfaMethod).default(["totp"]),
      })
      .strict()
      .prefault({}),
    totp: z
      .object({
        issuer: z.string().min(1).max(64).default("Identity").describe("Shown in authenticator apps"),
        window: z.number().int().min(0).max(2).default(1).describe("Accepted 30-second steps either side of now"),
      })
      .strict()
      .prefault({}),
    recovery_codes: z.number().int().min(4).max(20).default(10),
    high_risk_methods: z
      .array(mfaMethod)
      .default([])
      .describe("At high risk only these methods complete a challenge (e.g. [webauthn]: phishing-resistant only); empty: any"),
    max_code_failures: z
      .number()
      .int()
      .min(1)
      .max(100)
      .default(10)
      .describe("Wrong second-factor codes per user per window (challenges and MfaService together)"),
    code_failures_window_seconds: positiveSeconds.default(900),
    step_up_max_age_seconds: z
      .number()
      .int()
      .min(30)
      .max(86_400)
      .default(600)
      .describe("Changing factors needs a second factor (or, without one, a sign-in) on the session at most this long ago"),
  })
  .strict()
  .prefault({});

/** Names of admin API keys: the `actor` of their audit events. */
export const ADMIN_KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/** An admin key's SHA-256 as written: 64 hex digits or 43 base64url characters (canonical). */
const adminKeyHash = z.string().refine(
  (v) => /^[0-9a-fA-F]{64}$/.test(v) || (/^[A-Za-z0-9_-]{43}$/.test(v) && Buffer.from(v, "base64url").toString("base64url") === v),
  { message: "must be the key's SHA-256: 64 hex digits or 43 base64url characters (`npm run admin -- keys new` prints it)" },
);

/** The same hash in either spelling, as one string (to find duplicates). */
const hashBytes = (v: string) => (v.length === 64 ? v.toLowerCase() : Buffer.from(v, "base64url").toString("hex"));

/** The admin API (AdminService): off unless at least one key is configured. */
const admin = z
  .object({
    api_keys_file: z.string().optional().describe("More api_keys from a file (YAML/JSON list of {name, sha256}); env ADMIN_API_KEYS_FILE"),
    api_keys: z
      .array(
        z
          .object({
            name: z.string().regex(ADMIN_KEY_NAME, "letters, digits and . _ @ -, at most 64").describe("Recorded as the actor"),
            sha256: adminKeyHash,
          })
          .strict(),
      )
      .default([])
      .superRefine((keys, ctx) => {
        const names = new Set<string>();
        const hashes = new Set<string>();
        keys.forEach((k, i) => {
          if (names.has(k.name)) ctx.addIssue({ code: "custom", path: [i, "name"], message: `two keys are named ${k.name}` });
          names.add(k.name);
          const h = hashBytes(k.sha256);
          if (hashes.has(h)) ctx.addIssue({ code: "custom", path: [i, "sha256"], message: "this key is configured twice" });
          hashes.add(h);
        });
      }),
  })
  .strict()
  .prefault({});

const OAUTH_GRANT_TYPES = [
  "urn:ietf:params:oauth:grant-type:token-exchange",
  "urn:ietf:params:oauth:grant-type:jwt-bearer",
  "refresh_token",
  "urn:identity:params:oauth:grant-type:mfa",
] as const;

/** One OAuth client (`oauth.clients.<id>`): public, or confidential with a hashed secret. */
const oauthClient = z
  .object({
    token_endpoint_auth_method: z
      .enum(["none", "client_secret_basic", "client_secret_post", "private_key_jwt"])
      .default("none")
      .describe("none: a public client (no secret); else how the confidential client sends its secret"),
    client_secret_sha256: adminKeyHash
      .optional()
      .describe("SHA-256 of the client secret (64 hex or 43 base64url); the secret itself is never configured"),
    jwks: z
      .object({ keys: z.array(z.record(z.string(), z.unknown())).min(1) })
      .optional()
      .describe("private_key_jwt: the client's public keys, inline"),
    jwks_uri: z.url().optional().describe("private_key_jwt: where the client publishes its public keys"),
    grant_types: z.array(z.enum(OAUTH_GRANT_TYPES)).min(1).default([...OAUTH_GRANT_TYPES]).describe("Grants this client may use"),
    audiences: z
      .array(z.string().min(1))
      .optional()
      .describe("Values it may send as audience/resource; default: every tokens.audience"),
  })
  .strict()
  .superRefine((c, ctx) => {
    const keyed = c.token_endpoint_auth_method === "private_key_jwt";
    if (keyed !== (c.jwks !== undefined || c.jwks_uri !== undefined) || (c.jwks !== undefined && c.jwks_uri !== undefined)) {
      ctx.addIssue({ code: "custom", path: ["jwks"], message: "private_key_jwt needs one of jwks or jwks_uri; other methods have neither" });
    }
    if (keyed && c.client_secret_sha256 !== undefined) {
      ctx.addIssue({ code: "custom", path: ["client_secret_sha256"], message: "a private_key_jwt client has no secret" });
    }
    const confidential = c.token_endpoint_auth_method === "client_secret_basic" || c.token_endpoint_auth_method === "client_secret_post";
    if (confidential && c.client_secret_sha256 === undefined) {
      ctx.addIssue({ code: "custom", path: ["client_secret_sha256"], message: `${c.token_endpoint_auth_method} needs client_secret_sha256` });
    }
    if (c.token_endpoint_auth_method === "none" && c.client_secret_sha256 !== undefined) {
      ctx.addIssue({ code: "custom", path: ["client_secret_sha256"], message: "a public client (token_endpoint_auth_method: none) has no secret" });
    }
  });

/** The OAuth 2.0 endpoints (/oauth2/token, /oauth2/revoke, /oauth2/introspect) and their clients. */
const oauth = z
  .object({
    clients: z
      .record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "client ids are letters, digits and . _ -, at most 64"), oauthClient)
      .default({})
      .describe("Registered clients by client_id; dev mode adds a public client `dev`"),
  })
  .strict()
  .prefault({});

export const configSchema = z
  .object({
    dev: z.boolean().default(false).describe("Development mode: built-in dev OpenID issuer"),
    data_dir: z
      .string()
      .optional()
      .describe("SQLite database, generated KEK, dev issuer key; default ./data in dev mode and for the tools; serving in production needs it set (or database.url and a KEK)"),
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
        workers: z
          .union([z.number().int().min(1).max(256), z.literal("auto")])
          .default(1)
          .describe("Processes serving the port (node:cluster); auto: one per available core"),
        worker_balancing: z
          .enum(["round_robin", "kernel"])
          .default("round_robin")
          .describe("workers > 1: the supervisor hands out connections in turn, or each worker has its own SO_REUSEPORT socket (needs a fixed port)"),
        shutdown_timeout_ms: z.number().int().min(0).default(10_000),
        shutdown_delay_ms: z.number().int().min(0).default(5000).describe("SIGTERM: not ready at once, still serving this long, then drain"),
        health_watch_interval_ms: z.number().int().min(100).default(5000).describe("How often open Health.Watch calls re-check the database"),
        reflection: z.boolean().optional().describe("gRPC server reflection; default on in dev mode only"),
        max_connections: z.number().int().min(1).default(1024).describe("Open connections at most; more are closed at once"),
        max_connections_per_address: z
          .number()
          .int()
          .min(1)
          .optional()
          .describe("Open connections from one client address (IPv6: its prefix) at most; default min(64, ¾ of max_connections). Trusted proxies are exempt"),
        max_requests_per_address: z
          .number()
          .int()
          .min(1)
          .default(128)
          .describe("Requests in flight from one client address (behind trusted proxies: the forwarded one) at most; more answer 429 at once"),
        max_streams_per_connection: z.number().int().min(1).max(1000).default(100).describe("HTTP/2 streams open at once on one connection"),
        handshake_timeout_ms: z.number().int().min(100).default(10_000).describe("A new connection's deadline to say its protocol (or finish TLS)"),
        idle_timeout_ms: z.number().int().min(100).default(60_000).describe("An HTTP/2 connection without traffic is closed after this"),
        request_timeout_ms: z.number().int().min(100).default(30_000).describe("A request's deadline to arrive whole (headers and body)"),
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
          ctx.addIssue({ code: "custom", path: ["max_connections_per_address"], message: "must not exceed server.max_connections" });
        }
        if (srv.worker_balancing === "kernel" && srv.workers !== 1 && srv.port === 0) {
          ctx.addIssue({
            code: "custom",
            path: ["worker_balancing"],
            message: "kernel balancing needs a fixed server.port: each worker binds a socket of its own, and port 0 would give each a port of its own",
          });
        }
      })
      .prefault({}),
    tracing: z
      .object({
        enabled: z.boolean().optional().describe("OpenTelemetry tracing; default: on when otlp_endpoint is set"),
        otlp_endpoint: z.url().optional().describe("OTLP/HTTP base URL (OTEL_EXPORTER_OTLP_ENDPOINT); /v1/traces is appended"),
        service_name: z.string().min(1).default("idtoken-signin"),
        sample_ratio: z.number().min(0).max(1).default(1).describe("Fraction of new traces kept; a caller's traceparent decides for its own"),
      })
      .strict()
      .prefault({}),
    database: z
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
              .describe("SQLite: the WAL file's bound; restarted past half of it, writes wait past three quarters, a restarted WAL is truncated to a quarter"),
          })
          .strict()
          .prefault({}),
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
        refresh_reuse_grace_seconds: seconds
          .max(60)
          .default(0)
          .describe("A spent refresh token repeated this soon by the same client gets the same successor (two tabs); 0: any reuse revokes the session"),
        signing_key_rotation_days: z.number().positive().optional().describe("Rotate the signing key after this many days"),
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
          .describe("Every per-address limit counts an IPv6 client by this prefix (64: one subscriber's network, whose addresses it can rotate)"),
        refusal_audit_interval_seconds: positiveSeconds
          .default(60)
          .describe("Refusals by the limit are written as one audit row per address per interval, with a count"),
      })
      .strict()
      .prefault({}),
    id_token: z
      .object({
        max_bytes: z.number().int().min(512).max(64 * 1024).default(16 * 1024),
        nonce_ttl_seconds: positiveSeconds.max(3600).default(600).describe("Life of a nonce from POST /auth/id-token/nonce"),
      })
      .strict()
      .prefault({}),
    audit: z
      .object({
        retention_days: z.number().int().min(0).default(90).describe("Audit rows older than this are purged hourly; 0 keeps them forever"),
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
