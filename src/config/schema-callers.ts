import { z } from "zod";
import { hashBytes, sha256Hash } from "./schema-values.ts";

/** The callers beside end users: operators with admin API keys, OAuth clients. */

/** Names of admin API keys: the `actor` of their audit events. */
export const ADMIN_KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/** The admin API (AdminService): off unless at least one key is configured. */
export const admin = z
  .object({
    api_keys_file: z
      .string()
      .optional()
      .describe("More api_keys from a file (YAML/JSON list of {name, sha256}); env ADMIN_API_KEYS_FILE"),
    api_keys: z
      .array(
        z
          .object({
            name: z
              .string()
              .regex(ADMIN_KEY_NAME, "letters, digits and . _ @ -, at most 64")
              .describe("Recorded as the actor"),
            sha256: sha256Hash,
          })
          .strict(),
      )
      .default([])
      .superRefine((keys, ctx) => {
        const names = new Set<string>();
        const hashes = new Set<string>();
        keys.forEach((k, i) => {
          if (names.has(k.name))
            ctx.addIssue({ code: "custom", path: [i, "name"], message: `two keys are named ${k.name}` });
          names.add(k.name);
          const h = hashBytes(k.sha256);
          if (hashes.has(h))
            ctx.addIssue({ code: "custom", path: [i, "sha256"], message: "this key is configured twice" });
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
    client_secret_sha256: sha256Hash
      .optional()
      .describe("SHA-256 of the client secret (64 hex or 43 base64url); the secret itself is never configured"),
    jwks: z
      .object({ keys: z.array(z.record(z.string(), z.unknown())).min(1) })
      .optional()
      .describe("private_key_jwt: the client's public keys, inline"),
    jwks_uri: z.url().optional().describe("private_key_jwt: where the client publishes its public keys"),
    grant_types: z
      .array(z.enum(OAUTH_GRANT_TYPES))
      .min(1)
      .default([...OAUTH_GRANT_TYPES])
      .describe("Grants this client may use"),
    audiences: z
      .array(z.string().min(1))
      .optional()
      .describe("Values it may send as audience/resource; default: every tokens.audience"),
  })
  .strict()
  .superRefine((c, ctx) => {
    const keyed = c.token_endpoint_auth_method === "private_key_jwt";
    if (
      keyed !== (c.jwks !== undefined || c.jwks_uri !== undefined) ||
      (c.jwks !== undefined && c.jwks_uri !== undefined)
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["jwks"],
        message: "private_key_jwt needs one of jwks or jwks_uri; other methods have neither",
      });
    }
    if (keyed && c.client_secret_sha256 !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["client_secret_sha256"],
        message: "a private_key_jwt client has no secret",
      });
    }
    const confidential =
      c.token_endpoint_auth_method === "client_secret_basic" || c.token_endpoint_auth_method === "client_secret_post";
    if (confidential && c.client_secret_sha256 === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["client_secret_sha256"],
        message: `${c.token_endpoint_auth_method} needs client_secret_sha256`,
      });
    }
    if (c.token_endpoint_auth_method === "none" && c.client_secret_sha256 !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["client_secret_sha256"],
        message: "a public client (token_endpoint_auth_method: none) has no secret",
      });
    }
  });

/** The OAuth 2.0 endpoints (/oauth2/token, /oauth2/revoke, /oauth2/introspect) and their clients. */
export const oauth = z
  .object({
    clients: z
      .record(
        z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "client ids are letters, digits and . _ -, at most 64"),
        oauthClient,
      )
      .default({})
      .describe("Registered clients by client_id; dev mode adds a public client `dev`"),
  })
  .strict()
  .prefault({});
