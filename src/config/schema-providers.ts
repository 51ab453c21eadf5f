import { z } from "zod";
import { TENANT_ID_PLACEHOLDER } from "../core/model.ts";
import { positiveSeconds, seconds } from "./schema-values.ts";

/** One OpenID provider (`providers.<name>`): what its ID tokens must say, and its policies. */
export const provider = z
  .object({
    issuer: z.url().describe("Exact `iss` of the provider's ID tokens"),
    client_ids: z.array(z.string().min(1)).min(1).describe("Our client IDs; `aud` must contain one"),
    trusted_audiences: z.array(z.string().min(1)).default([]),
    jwks_uri: z.url().optional().describe("Else found through OIDC discovery"),
    algorithms: z
      .array(
        z.enum(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"]),
      )
      .min(1)
      .default(["RS256"]),
    clock_skew_seconds: seconds.max(300).default(60),
    max_token_age_seconds: positiveSeconds.optional(),
    signup: z.enum(["allow", "deny"]).default("allow"),
    link_by_email: z.enum(["never", "verified"]).default("never"),
    trust_upstream_mfa: z
      .boolean()
      .default(false)
      .describe(
        "An ID token saying the provider did MFA (amr `mfa`, two factor kinds, or mfa_acr_values) lowers the risk",
      ),
    mfa_acr_values: z
      .array(z.string().min(1))
      .default([])
      .describe("`acr` values of this provider that mean MFA happened"),
    require_nonce: z
      .union([z.boolean(), z.literal("server")])
      .default(false)
      .describe(
        "true: the request must send the token's nonce; server: the nonce must also be one this service issued (POST /auth/id-token/nonce), single use",
      ),
    allow_token_reuse: z
      .boolean()
      .default(false)
      .describe("Accept one ID token for several sign-ins (default: each token once, id_token_replayed after)"),
    nonce_hashing: z
      .enum(["none", "sha256"])
      .default("none")
      .describe("sha256: the token holds SHA-256(hex) of the nonce"),
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
      ctx.addIssue({
        code: "custom",
        path: ["jwks_uri"],
        message: `an issuer with ${TENANT_ID_PLACEHOLDER} needs jwks_uri`,
      });
    }
  });
