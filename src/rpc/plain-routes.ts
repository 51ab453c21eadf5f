import { readFileSync } from "node:fs";
import type { PlainHandler } from "./http-handler.ts";
import { oauthMetadata } from "./oauth-routes.ts";
import type { Readiness } from "./readiness.ts";
import { webAppRoutes } from "./web-app.ts";
import { PLAIN_OPERATIONS, withPlainEndpoints } from "./plain-operations.ts";

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
  /** The OAuth endpoints and RFC 8414 metadata (rpc/oauth-routes.ts). */
  oauth: ReadonlyMap<string, PlainHandler>;
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
        return { status: 400, json: { code: "invalid_request", message: 'give at least {"sub": "alice"}' } };
      }
      return { status: 200, json: { id_token: await dev.mint(r as { sub: string }), provider: "dev" } };
    });
  }
  const metrics = deps.metrics;
  if (metrics !== undefined) {
    plain.set("GET /metrics", async () => ({
      status: 200,
      text: await metrics.render(),
      headers: { "content-type": metrics.contentType },
    }));
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
    return {
      status: 503,
      json: { status: "not_ready", reason: state === "draining" ? "draining" : deps.notReadyReason() },
    };
  });
  plain.set("GET /.well-known/jwks.json", async () => ({ status: 200, json: deps.jwks(), headers: CACHEABLE }));
  for (const [route, handler] of deps.oauth) plain.set(route, handler);
  // Only what is served: we issue access tokens (no ID tokens, no authorization endpoint), so
  // the document names the issuer, its keys and the OAuth endpoints (the same as RFC 8414's).
  plain.set("GET /.well-known/openid-configuration", async () => ({
    status: 200,
    json: { issuer: deps.urls.issuer(), jwks_uri: deps.urls.jwksUri(), ...oauthMetadata(deps.urls) },
    headers: CACHEABLE,
  }));

  // The REST API's OpenAPI document (generated from proto/), with our one public URL as server.
  const openapi = JSON.parse(
    readFileSync(new URL("../../gen/openapi/openapi.json", import.meta.url), "utf8"),
  ) as Record<string, unknown>;
  let served: Record<string, unknown> | undefined;
  plain.set("GET /openapi.json", async () => ({
    status: 200,
    json: (served ??= withPlainEndpoints({ ...openapi, servers: [{ url: deps.urls.base() }] }, plain.keys(), webApp)),
    headers: CACHEABLE,
  }));
  for (const key of plain.keys()) {
    if (!webApp.has(key) && PLAIN_OPERATIONS[key] === undefined)
      throw new Error(`${key}: a plain endpoint needs its OpenAPI entry in PLAIN_OPERATIONS`);
  }
  return plain;
}
