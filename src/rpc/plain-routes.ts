import { readFileSync } from "node:fs";
import type { PlainHandler } from "./http-handler.ts";
import type { Readiness } from "./readiness.ts";
import { webAppRoutes } from "./web-app.ts";

/** What the plain endpoints serve; each part is given by app.ts (structural, so rpc imports no tokens or telemetry). */
export interface PlainRouteDeps {
  /** The one public URL and what is named after it (config/public-url.ts). */
  urls: { base(): string; issuer(): string; jwksUri(): string };
  /** Our access tokens' public keys (the local key ring). */
  jwks: () => unknown;
  readiness: Readiness;
  /** Why the database counts as not ready (the last probe's reason). */
  notReadyReason: () => string;
  /** Prometheus text on the main port; undefined when `server.metrics_port` serves it apart. */
  metrics?: { render(): Promise<string>; contentType: string } | undefined;
  /** The built-in dev OpenID issuer (dev mode only). */
  devIssuer?: { discovery(): unknown; jwks(): unknown; mint(request: { sub: string }): Promise<string> } | undefined;
  /** Whether to serve the web app at `/`. */
  webApp: boolean;
}

/** Discovery, keys and the OpenAPI document may be cached a little; nothing in them is personal. */
const CACHEABLE = { "cache-control": "public, max-age=300" };

/**
 * The plain HTTP endpoints beside the RPCs, as "METHOD /path" -> handler: the dev issuer, metrics,
 * health and readiness, the web app, our JWKS and discovery document, and the OpenAPI document
 * (which lists all of them but the web app's pages and assets, each as PLAIN_OPERATIONS says).
 */
export function createPlainRoutes(deps: PlainRouteDeps): Map<string, PlainHandler> {
  const plain = new Map<string, PlainHandler>();
  const dev = deps.devIssuer;
  if (dev !== undefined) {
    plain.set("GET /dev/oidc/.well-known/openid-configuration", async () => ({ status: 200, json: dev.discovery() }));
    plain.set("GET /dev/oidc/jwks", async () => ({ status: 200, json: dev.jwks() }));
    plain.set("POST /dev/oidc/token", async (_req, body) => {
      const r = (await body()) as { sub?: unknown };
      if (typeof r.sub !== "string" || r.sub === "") {
        return { status: 400, json: { code: "invalid_request", message: "give at least {\"sub\": \"alice\"}" } };
      }
      return { status: 200, json: { id_token: await dev.mint(r as { sub: string }), provider: "dev" } };
    });
  }
  const metrics = deps.metrics;
  if (metrics !== undefined) {
    plain.set("GET /metrics", async () => ({ status: 200, text: await metrics.render(), headers: { "content-type": metrics.contentType } }));
  }
  plain.set("GET /healthz", async () => ({ status: 200, json: { status: "ok" } }));
  const webApp = new Set<string>();
  if (deps.webApp) {
    for (const [route, handler] of webAppRoutes({ devIssuer: dev !== undefined })) {
      plain.set(route, handler);
      webApp.add(route);
    }
  }
  plain.set("GET /readyz", async () => {
    const state = await deps.readiness.check();
    if (state === "ready") return { status: 200, json: { status: "ready" } };
    return { status: 503, json: { status: "not_ready", reason: state === "draining" ? "draining" : deps.notReadyReason() } };
  });
  plain.set("GET /.well-known/jwks.json", async () => ({ status: 200, json: deps.jwks(), headers: CACHEABLE }));
  // Only what is served: we issue access tokens (no ID tokens, no OAuth endpoints), so the
  // document names the issuer and where its keys are; nothing else in it would be true.
  plain.set("GET /.well-known/openid-configuration", async () => ({
    status: 200,
    json: { issuer: deps.urls.issuer(), jwks_uri: deps.urls.jwksUri() },
    headers: CACHEABLE,
  }));

  // The REST API's OpenAPI document (generated from proto/), with our one public URL as server.
  const openapi = JSON.parse(readFileSync(new URL("../../gen/openapi/openapi.json", import.meta.url), "utf8")) as Record<string, unknown>;
  let served: Record<string, unknown> | undefined;
  plain.set("GET /openapi.json", async () => ({
    status: 200,
    json: (served ??= withPlainEndpoints({ ...openapi, servers: [{ url: deps.urls.base() }] }, plain.keys(), webApp)),
    headers: CACHEABLE,
  }));
  for (const key of plain.keys()) {
    if (!webApp.has(key) && PLAIN_OPERATIONS[key] === undefined) throw new Error(`${key}: a plain endpoint needs its OpenAPI entry in PLAIN_OPERATIONS`);
  }
  return plain;
}

type Operation = Record<string, unknown>;

const jsonAnswer = (description: string, schema: Record<string, unknown>) => ({ description, content: { "application/json": { schema } } });
const statusBody = (values: string[], extra: Record<string, unknown> = {}) => ({
  type: "object",
  properties: { status: { enum: values }, ...extra },
  required: ["status"],
});
const jwksBody = { type: "object", properties: { keys: { type: "array", items: { type: "object" } } }, required: ["keys"] };

/**
 * How the OpenAPI document describes each plain endpoint. The web app's routes (`/`, its hashed
 * assets) are pages, not API, and are left out; every other plain route needs its entry here
 * (createPlainRoutes refuses to start without one), so the document names every API route.
 */
const PLAIN_OPERATIONS: Record<string, Operation> = {
  "GET /healthz": {
    tags: ["Operations"],
    summary: "Liveness: the process is up",
    description: "200 whenever the process answers, whatever the database does: use it for liveness probes, so a database outage does not restart every replica.",
    responses: { "200": jsonAnswer("The process is up", statusBody(["ok"])) },
  },
  "GET /readyz": {
    tags: ["Operations"],
    summary: "Readiness: not draining, and the database accepts writes",
    description:
      "The same answer as gRPC health (`grpc.health.v1.Health`, service \"\"). 503 from the first stop signal on (draining), " +
      "and while the database is down, full, read-only or damaged; `reason` says which.",
    responses: {
      "200": jsonAnswer("Ready for traffic", statusBody(["ready"])),
      "503": jsonAnswer("Not ready", statusBody(["not_ready"], { reason: { type: "string", examples: ["draining", "database unavailable"] } })),
    },
  },
  "GET /metrics": {
    tags: ["Operations"],
    summary: "Prometheus metrics",
    description: "The Prometheus text exposition format. Served on this port unless `server.metrics_port` gives the metrics a port of their own.",
    responses: { "200": { description: "The metrics", content: { "text/plain": { schema: { type: "string" } } } } },
  },
  "GET /.well-known/jwks.json": {
    tags: ["Operations"],
    summary: "The public keys of our access tokens (JWKS)",
    description: "Verify our access tokens with these. A retired key stays listed until the tokens it signed have expired. Cacheable for 5 minutes.",
    responses: { "200": jsonAnswer("A JSON Web Key Set", jwksBody) },
  },
  "GET /.well-known/openid-configuration": {
    tags: ["Operations"],
    summary: "Discovery: our token issuer and where its keys are",
    description: "Only `issuer` and `jwks_uri`: this service issues access tokens, not ID tokens, and serves no OAuth endpoints.",
    responses: {
      "200": jsonAnswer("The discovery document", {
        type: "object",
        properties: { issuer: { type: "string", format: "uri" }, jwks_uri: { type: "string", format: "uri" } },
        required: ["issuer", "jwks_uri"],
      }),
    },
  },
  "GET /openapi.json": {
    tags: ["Operations"],
    summary: "This document",
    description: "OpenAPI 3.1, generated from proto/ by `npm run generate`; `servers` is the service's public URL. Cacheable for 5 minutes.",
    responses: { "200": jsonAnswer("The OpenAPI document", { type: "object" }) },
  },
  "GET /dev/oidc/.well-known/openid-configuration": {
    tags: ["Development"],
    summary: "The dev issuer's discovery document (dev mode only)",
    description: "The built-in development OpenID issuer (provider `dev`), as a real provider publishes it.",
    responses: { "200": jsonAnswer("The dev issuer's discovery document", { type: "object", properties: { issuer: { type: "string" }, jwks_uri: { type: "string" } }, required: ["issuer", "jwks_uri"] }) },
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
      "An ID token from the built-in dev issuer for any test user, to sign in with at `POST /auth/id-token/signin` with `provider: \"dev\"`. " +
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
              amr: { type: "array", items: { type: "string" }, description: "e.g. [\"pwd\", \"otp\"] (an upstream second factor)" },
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
      "400": jsonAnswer("No `sub`", { type: "object", properties: { code: { const: "invalid_request" }, message: { type: "string" } }, required: ["code", "message"] }),
    },
  },
};

const PLAIN_TAGS = [
  { name: "Operations", description: "Health, readiness, metrics, our keys and discovery, and this document: served beside the API, not RPCs." },
  { name: "Development", description: "The built-in development OpenID issuer: served in dev mode (`npm start`) only." },
];

/**
 * The OpenAPI document with the plain API endpoints (health, metrics, keys, discovery, the dev
 * issuer in dev mode) beside the REST routes; the web app's pages and assets are not API.
 */
function withPlainEndpoints(doc: Record<string, unknown>, plain: Iterable<string>, webApp: ReadonlySet<string>): Record<string, unknown> {
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
