/**
 * The OpenAPI entries of the plain HTTP endpoints (rpc/plain-routes.ts): each one's summary,
 * description and answers, and how they join the REST routes' document. The service refuses to
 * start with a plain endpoint that has no entry here.
 */
type Operation = Record<string, unknown>;

const jsonAnswer = (description: string, schema: Record<string, unknown>) => ({
  description,
  content: { "application/json": { schema } },
});
const statusBody = (values: string[], extra: Record<string, unknown> = {}) => ({
  type: "object",
  properties: { status: { enum: values }, ...extra },
  required: ["status"],
});
const oauthErrorBody = {
  type: "object",
  properties: { error: { type: "string" }, error_description: { type: "string" } },
  required: ["error"],
};
const tokenBody = {
  type: "object",
  properties: {
    access_token: { type: "string" },
    token_type: { const: "Bearer" },
    expires_in: { type: "integer" },
    refresh_token: { type: "string" },
    issued_token_type: { type: "string", description: "Token exchange only" },
  },
  required: ["access_token", "token_type", "expires_in", "refresh_token"],
};
const metadataBody = {
  type: "object",
  properties: {
    issuer: { type: "string", format: "uri" },
    jwks_uri: { type: "string", format: "uri" },
    token_endpoint: { type: "string", format: "uri" },
    revocation_endpoint: { type: "string", format: "uri" },
    introspection_endpoint: { type: "string", format: "uri" },
    grant_types_supported: { type: "array", items: { type: "string" } },
    token_endpoint_auth_methods_supported: { type: "array", items: { type: "string" } },
  },
  required: ["issuer", "jwks_uri", "token_endpoint", "grant_types_supported"],
};
const formProperties = Object.fromEntries(
  [
    "grant_type",
    "client_id",
    "client_secret",
    "subject_token",
    "subject_token_type",
    "requested_token_type",
    "audience",
    "resource",
    "scope",
    "assertion",
    "refresh_token",
    "mfa_token",
    "code",
    "method",
    "trust_device",
  ].map((name) => [name, { type: "string" }]),
);
const jwksBody = {
  type: "object",
  properties: { keys: { type: "array", items: { type: "object" } } },
  required: ["keys"],
};

/**
 * How the OpenAPI document describes each plain endpoint. The web app's routes (`/`, its hashed
 * assets) are pages, not API, and are left out; every other plain route needs its entry here
 * (createPlainRoutes refuses to start without one), so the document names every API route.
 */
export const PLAIN_OPERATIONS: Record<string, Operation> = {
  "GET /healthz": {
    tags: ["Operations"],
    summary: "Liveness: the process is up",
    description:
      "200 whenever the process answers, whatever the database does: use it for liveness probes, so a database outage does not restart every replica.",
    responses: { "200": jsonAnswer("The process is up", statusBody(["ok"])) },
  },
  "GET /readyz": {
    tags: ["Operations"],
    summary: "Readiness: not draining, and the database accepts writes",
    description:
      'The same answer as gRPC health (`grpc.health.v1.Health`, service ""). 503 from the first stop signal on (draining), ' +
      "and while the database is down, full, read-only or damaged; `reason` says which.",
    responses: {
      "200": jsonAnswer("Ready for traffic", statusBody(["ready"])),
      "503": jsonAnswer(
        "Not ready",
        statusBody(["not_ready"], { reason: { type: "string", examples: ["draining", "database unavailable"] } }),
      ),
    },
  },
  "GET /metrics": {
    tags: ["Operations"],
    summary: "Prometheus metrics",
    description:
      "The Prometheus text exposition format. Served on this port unless `server.metrics_port` gives the metrics a port of their own.",
    responses: { "200": { description: "The metrics", content: { "text/plain": { schema: { type: "string" } } } } },
  },
  "GET /.well-known/jwks.json": {
    tags: ["Operations"],
    summary: "The public keys of our access tokens (JWKS)",
    description:
      "Verify our access tokens with these. A retired key stays listed until the tokens it signed have expired. Cacheable for 5 minutes.",
    responses: { "200": jsonAnswer("A JSON Web Key Set", jwksBody) },
  },
  "GET /.well-known/openid-configuration": {
    tags: ["Operations"],
    summary: "Discovery: our token issuer, its keys and the OAuth endpoints",
    description:
      "`issuer`, `jwks_uri` and the same OAuth endpoints and `grant_types_supported` as `/.well-known/oauth-authorization-server`. " +
      "This service issues access tokens, not ID tokens, and has no authorization endpoint. Cacheable for 5 minutes.",
    responses: { "200": jsonAnswer("The discovery document", metadataBody) },
  },
  "GET /.well-known/oauth-authorization-server": {
    tags: ["OAuth"],
    summary: "OAuth 2.0 authorization server metadata (RFC 8414)",
    description:
      "The token, revocation and introspection endpoints, the grants and client authentication methods supported. Cacheable for 5 minutes.",
    responses: { "200": jsonAnswer("The metadata", metadataBody) },
  },
  "POST /oauth2/token": {
    tags: ["OAuth"],
    summary: "Token endpoint (RFC 6749): token exchange, JWT bearer, refresh, MFA completion",
    description:
      "Form-encoded (`application/x-www-form-urlencoded`). `grant_type` is one of `urn:ietf:params:oauth:grant-type:token-exchange` " +
      "(RFC 8693: `subject_token` = a provider's ID token, `subject_token_type` = `urn:ietf:params:oauth:token-type:id_token` or `…:jwt`, " +
      "optional `requested_token_type` = `urn:ietf:params:oauth:token-type:access_token`, `audience`/`resource`), " +
      "`urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523: `assertion` = the ID token), `refresh_token`, or " +
      "`urn:identity:params:oauth:grant-type:mfa` (`mfa_token`, `code`, optional `method`, `trust_device`) after an `mfa_required` answer. " +
      "The client authenticates with HTTP Basic, `client_secret` in the form, or (public clients) `client_id` alone. " +
      "The same sign-in, risk assessment, limits and audit as `POST /auth/id-token/signin`.",
    requestBody: {
      required: true,
      content: {
        "application/x-www-form-urlencoded": {
          schema: { type: "object", required: ["grant_type"], properties: formProperties },
        },
      },
    },
    responses: {
      "200": jsonAnswer("The tokens (`Cache-Control: no-store`)", tokenBody),
      "400": jsonAnswer(
        "An RFC 6749 §5.2 error: invalid_request, invalid_grant, unauthorized_client, unsupported_grant_type, invalid_scope, invalid_target",
        oauthErrorBody,
      ),
      "401": jsonAnswer("invalid_client (with `WWW-Authenticate: Basic`)", oauthErrorBody),
      "403": jsonAnswer("mfa_required: complete with the MFA grant (or VerifyMfa) using `mfa_token`", {
        ...oauthErrorBody,
        properties: {
          ...oauthErrorBody.properties,
          mfa_token: { type: "string" },
          required_mfa_methods: { type: "array", items: { type: "string" } },
          mfa_expires_in: { type: "integer" },
        },
      }),
      "429": jsonAnswer("rate_limited: too many failures from this address (`Retry-After`)", oauthErrorBody),
    },
  },
  "POST /oauth2/revoke": {
    tags: ["OAuth"],
    summary: "Token revocation (RFC 7009): ends the session behind a refresh (or access) token",
    description:
      "Form-encoded `token` (and optional `token_type_hint`), with the client's authentication. 200 also for an unknown or already ended token.",
    requestBody: {
      required: true,
      content: {
        "application/x-www-form-urlencoded": {
          schema: {
            type: "object",
            required: ["token"],
            properties: {
              token: { type: "string" },
              token_type_hint: { enum: ["refresh_token", "access_token"] },
              client_id: { type: "string" },
              client_secret: { type: "string" },
            },
          },
        },
      },
    },
    responses: {
      "200": jsonAnswer("Revoked (or nothing to revoke)", { type: "object" }),
      "400": jsonAnswer("invalid_request or unsupported_token_type", oauthErrorBody),
      "401": jsonAnswer("invalid_client", oauthErrorBody),
    },
  },
  "POST /oauth2/introspect": {
    tags: ["OAuth"],
    summary: "Token introspection (RFC 7662), for confidential clients",
    description:
      "Whether an access token is valid and its session still live (not signed out, expired or idle, user active): `active` and the token's claims.",
    requestBody: {
      required: true,
      content: {
        "application/x-www-form-urlencoded": {
          schema: {
            type: "object",
            required: ["token"],
            properties: {
              token: { type: "string" },
              token_type_hint: { type: "string" },
              client_id: { type: "string" },
              client_secret: { type: "string" },
            },
          },
        },
      },
    },
    responses: {
      "200": jsonAnswer("The token's state", {
        type: "object",
        required: ["active"],
        properties: {
          active: { type: "boolean" },
          sub: { type: "string" },
          sid: { type: "string" },
          exp: { type: "integer" },
          iat: { type: "integer" },
          iss: { type: "string" },
          aud: {},
          amr: { type: "array", items: { type: "string" } },
        },
      }),
      "401": jsonAnswer("invalid_client (public clients may not introspect)", oauthErrorBody),
    },
  },
  "GET /openapi.json": {
    tags: ["Operations"],
    summary: "This document",
    description:
      "OpenAPI 3.1, generated from proto/ by `npm run generate`; `servers` is the service's public URL. Cacheable for 5 minutes.",
    responses: { "200": jsonAnswer("The OpenAPI document", { type: "object" }) },
  },
  "GET /dev/oidc/.well-known/openid-configuration": {
    tags: ["Development"],
    summary: "The dev issuer's discovery document (dev mode only)",
    description: "The built-in development OpenID issuer (provider `dev`), as a real provider publishes it.",
    responses: {
      "200": jsonAnswer("The dev issuer's discovery document", {
        type: "object",
        properties: { issuer: { type: "string" }, jwks_uri: { type: "string" } },
        required: ["issuer", "jwks_uri"],
      }),
    },
  },
  "GET /dev/oidc/jwks": {
    tags: ["Development"],
    summary: "The dev issuer's public keys (dev mode only)",
    description: "The keys the dev issuer's ID tokens are verified with.",
    responses: { "200": jsonAnswer("A JSON Web Key Set", jwksBody) },
  },
  "POST /dev/oidc/token": {
    tags: ["Development"],
    summary: "Mint a test ID token (dev mode only)",
    description:
      'An ID token from the built-in dev issuer for any test user, to sign in with at `POST /auth/id-token/signin` with `provider: "dev"`. ' +
      "Only `sub` is required; `email` is taken as verified unless `email_verified: false`.",
    requestBody: {
      required: true,
      content: {
        "application/json": {
          schema: {
            type: "object",
            required: ["sub"],
            properties: {
              sub: { type: "string", minLength: 1, description: "The test user's subject at the dev issuer" },
              email: { type: "string" },
              email_verified: { type: "boolean" },
              name: { type: "string" },
              preferred_username: { type: "string" },
              nonce: { type: "string" },
              amr: {
                type: "array",
                items: { type: "string" },
                description: 'e.g. ["pwd", "otp"] (an upstream second factor)',
              },
              aud: { type: "string", description: "Default: the dev client ID" },
            },
          },
        },
      },
    },
    responses: {
      "200": jsonAnswer("The ID token", {
        type: "object",
        properties: { id_token: { type: "string" }, provider: { const: "dev" } },
        required: ["id_token", "provider"],
      }),
      "400": jsonAnswer("No `sub`", {
        type: "object",
        properties: { code: { const: "invalid_request" }, message: { type: "string" } },
        required: ["code", "message"],
      }),
    },
  },
};

const PLAIN_TAGS = [
  {
    name: "Operations",
    description:
      "Health, readiness, metrics, our keys and discovery, and this document: served beside the API, not RPCs.",
  },
  {
    name: "OAuth",
    description:
      "The OAuth 2.0 door onto the same sign-in: token endpoint (token exchange, JWT bearer, refresh), revocation, introspection, metadata.",
  },
  {
    name: "Development",
    description: "The built-in development OpenID issuer: served in dev mode (`npm start`) only.",
  },
];

/**
 * The OpenAPI document with the plain API endpoints (health, metrics, keys, discovery, the dev
 * issuer in dev mode) beside the REST routes; the web app's pages and assets are not API.
 */
export function withPlainEndpoints(
  doc: Record<string, unknown>,
  plain: Iterable<string>,
  webApp: ReadonlySet<string>,
): Record<string, unknown> {
  const paths = { ...(doc["paths"] as Record<string, Record<string, unknown>>) };
  const tags = new Set<string>();
  for (const key of plain) {
    if (webApp.has(key)) continue;
    const operation = PLAIN_OPERATIONS[key]!;
    const [method, path] = key.split(" ") as [string, string];
    paths[path] = { ...paths[path], [method.toLowerCase()]: operation };
    for (const tag of operation["tags"] as string[]) tags.add(tag);
  }
  return {
    ...doc,
    tags: [...(doc["tags"] as unknown[]), ...PLAIN_TAGS.filter((t) => tags.has(t.name))],
    paths: Object.fromEntries(Object.entries(paths).sort(([a], [b]) => a.localeCompare(b))),
  };
}
