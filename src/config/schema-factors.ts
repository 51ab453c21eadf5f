import { z } from "zod";
import { cidr, positiveSeconds } from "./schema-values.ts";

/** The sections of proving who one is: local passwords, the risk of a sign-in, second factors, passkeys. */

/** OWASP's Argon2id floor, as memory × passes (19 MiB × 2, 12 MiB × 3, 9 MiB × 4, 7 MiB × 5). */
const ARGON2_MIN_MEMORY_TIME_KIB = 7168 * 5;
/** Local passwords (src/core/passwords.ts): hashing cost, length, expiry, change limits. */
export const password = z
  .object({
    argon2: z
      .object({
        memory_kib: z
          .number()
          .int()
          .min(7168)
          .max(4 * 1024 * 1024)
          .default(19_456),
        time_cost: z.number().int().min(1).max(50).default(2),
        parallelism: z.number().int().min(1).max(16).default(1),
      })
      .strict()
      .prefault({})
      .refine((a) => a.memory_kib * a.time_cost >= ARGON2_MIN_MEMORY_TIME_KIB, {
        message: `memory_kib × time_cost must be at least ${ARGON2_MIN_MEMORY_TIME_KIB} (OWASP's Argon2id minimum)`,
      }),
    max_age_days: z
      .number()
      .int()
      .positive()
      .max(3650)
      .optional()
      .describe("Local passwords expire after this; unset: never"),
    warning_days: z.number().int().nonnegative().default(14).describe("Warn (`expiring`) this many days before expiry"),
    grace_days: z
      .number()
      .int()
      .nonnegative()
      .default(0)
      .describe("After expiry, `expired_grace` this long, then `expired`"),
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

/** Risk assessment of every sign-in (src/core/risk.ts): signals, weights, levels. */
export const risk = z
  .object({
    geoip_db: z
      .string()
      .min(1)
      .optional()
      .describe("MaxMind .mmdb (Country: countries; City: also travel); unset: no geo signals"),
    thresholds: z
      .object({
        medium: z.number().int().min(1).max(100).default(30),
        high: z.number().int().min(1).max(100).default(60),
      })
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
      .object({
        max_speed_kmh: z.number().positive().default(1000),
        min_distance_km: z.number().nonnegative().default(300),
      })
      .strict()
      .prefault({}),
    network_prefix: z
      .object({
        ipv4: z.number().int().min(8).max(32).default(24),
        ipv6: z.number().int().min(16).max(128).default(48),
      })
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
export const webauthn = z
  .object({
    rp_id: z
      .string()
      .regex(
        /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/,
        "a host name (lower case), no scheme or port",
      )
      .optional()
      .describe(
        "The domain passkeys are scoped to; default: the public URL's host. A parent domain serves its subdomains",
      ),
    rp_name: z.string().min(1).max(64).default("Identity").describe("Shown by the browser when a passkey is created"),
    origins: z
      .array(z.url())
      .default([])
      .describe("Origins whose pages may run the ceremonies (scheme://host[:port]); default: the public URL's origin"),
    challenge_ttl_seconds: z
      .number()
      .int()
      .min(30)
      .max(600)
      .default(300)
      .describe("Life of a registration or sign-in ceremony"),
  })
  .strict()
  .prefault({});

/** Adaptive MFA policy, challenges and factors (src/core/risk.ts decideMfa, src/core/mfa.ts). */
export const mfa = z
  .object({
    require_at: z
      .enum(["low", "medium", "high", "never"])
      .default("medium")
      .describe("Lowest risk level that requires MFA"),
    always_for_users: z.array(z.string().regex(/^usr_[0-9a-z]+$/, "user ids look like usr_…")).default([]),
    no_factor: z
      .enum(["allow", "deny", "deny_high_risk"])
      .default("deny_high_risk")
      .describe(
        "MFA required but no factor enrolled: let in with mfa_enrollment_required, refuse, or refuse only at high risk",
      ),
    challenge_ttl_seconds: z.number().int().min(30).max(3600).default(300),
    max_attempts: z.number().int().min(1).max(20).default(5),
    trusted_device_days: z
      .number()
      .int()
      .min(0)
      .max(365)
      .default(30)
      .describe("Lifetime of a device credential (VerifyMfa trust_device); 0: none is issued"),
    trusted_device_max_level: z
      .enum(["none", "low", "medium", "high"])
      .default("medium")
      .describe("A trusted device skips MFA up to this level"),
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
      .describe(
        "At high risk only these methods complete a challenge (e.g. [webauthn]: phishing-resistant only); empty: any",
      ),
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
      .describe(
        "Changing factors needs a second factor (or, without one, a sign-in) on the session at most this long ago",
      ),
  })
  .strict()
  .prefault({});
