import {
  CLIENT_ASSERTION_ALGORITHMS,
  CLIENT_AUTH_METHODS,
  OAUTH_GRANTS,
  OAuthError,
  type OAuthRequest,
  type OAuthService,
} from "../core/oauth.ts";
import type { Logger } from "../logger.ts";
import { describeCause } from "./errors.ts";
import type { PlainHandler, PlainRequest } from "./http-handler.ts";
import type { NodeRequest } from "./http-io.ts";

/**
 * The OAuth 2.0 endpoints as plain HTTP: form bodies in (RFC 6749 §3.2), JSON answers out with
 * `Cache-Control: no-store` (§5.1), errors as §5.2 says. The decisions are the core's (core/oauth.ts).
 */
export interface OAuthRouteDeps {
  oauth: OAuthService;
  urls: { base(): string; issuer(): string; jwksUri(): string };
  logger: Logger;
}

const NO_STORE = { "cache-control": "no-store", pragma: "no-cache" };
const FORM = "application/x-www-form-urlencoded";

/** The endpoints' URLs, named after the one public URL. */
export function oauthEndpoints(urls: { base(): string }) {
  const base = urls.base();
  return {
    token_endpoint: `${base}/oauth2/token`,
    revocation_endpoint: `${base}/oauth2/revoke`,
    introspection_endpoint: `${base}/oauth2/introspect`,
  };
}

/** What RFC 8414 metadata and the OpenID discovery document say about the OAuth endpoints. */
export function oauthMetadata(urls: { base(): string }) {
  const methods = [...CLIENT_AUTH_METHODS];
  const confidential = methods.filter((m) => m !== "none");
  return {
    ...oauthEndpoints(urls),
    grant_types_supported: [...OAUTH_GRANTS],
    token_endpoint_auth_methods_supported: methods,
    revocation_endpoint_auth_methods_supported: methods,
    introspection_endpoint_auth_methods_supported: confidential,
    token_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGORITHMS],
    // No authorization endpoint: tokens come from exchanging a provider's ID token.
    response_types_supported: [],
  };
}

/** The form's parameters, every value of each; empty values are dropped (RFC 6749 §3.1). */
async function formOf(req: NodeRequest, request: PlainRequest): Promise<Map<string, string[]>> {
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== FORM) throw new OAuthError("invalid_request", `send the parameters as ${FORM}`);
  const params = new Map<string, string[]>();
  for (const [name, value] of new URLSearchParams(await request.text())) {
    if (value === "") continue;
    const values = params.get(name);
    if (values === undefined) params.set(name, [value]);
    else values.push(value);
  }
  return params;
}

/** RFC 6749 §2.3.1: Basic credentials whose id and secret are each form-encoded. */
function basicOf(header: string | undefined): OAuthRequest["basic"] {
  if (header === undefined) return null;
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (match === null) return /^Basic\b/i.test(header) ? "malformed" : null;
  const decoded = Buffer.from(match[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return "malformed";
  try {
    const formDecode = (s: string) => decodeURIComponent(s.replace(/\+/g, " "));
    return { id: formDecode(decoded.slice(0, colon)), secret: formDecode(decoded.slice(colon + 1)) };
  } catch {
    return "malformed";
  }
}

type PlainAnswer = Awaited<ReturnType<PlainHandler>>;

function errorAnswer(e: OAuthError): PlainAnswer {
  const headers: Record<string, string> = { ...NO_STORE };
  // RFC 6749 §5.2: invalid_client is 401 with the scheme the client should use.
  if (e.error === "invalid_client") headers["www-authenticate"] = 'Basic realm="oauth2", charset="UTF-8"';
  const retry = e.extra["retry_after_seconds"];
  if (typeof retry === "number") headers["retry-after"] = String(retry);
  return { status: e.status, json: { error: e.error, error_description: e.description, ...e.extra }, headers };
}

/** Runs one endpoint: parse, call the core, answer; an OAuthError becomes its RFC answer. */
function endpoint(logger: Logger, run: (request: OAuthRequest) => Promise<PlainAnswer>): PlainHandler {
  return async (req, _json, plain) => {
    try {
      const authorization = req.headers.authorization;
      const request: OAuthRequest = {
        params: await formOf(req, plain),
        basic: basicOf(typeof authorization === "string" ? authorization : undefined),
        client: plain.client,
      };
      return await run(request);
    } catch (e) {
      if (e instanceof OAuthError) {
        // The client learns only "server_error"; the log gets the cause.
        if (e.error === "server_error")
          logger.error("oauth request failed", { path: (req.url ?? "").split("?")[0], cause: describeCause(e.cause) });
        return errorAnswer(e);
      }
      throw e;
    }
  };
}

/** "METHOD /path" -> handler for the OAuth endpoints and the RFC 8414 metadata. */
export function createOAuthRoutes(deps: OAuthRouteDeps): Map<string, PlainHandler> {
  const routes = new Map<string, PlainHandler>();
  routes.set(
    "POST /oauth2/token",
    endpoint(deps.logger, async (request) => ({
      status: 200,
      json: await deps.oauth.token(request),
      headers: NO_STORE,
    })),
  );
  routes.set(
    "POST /oauth2/revoke",
    endpoint(deps.logger, async (request) => {
      await deps.oauth.revoke(request);
      return { status: 200, json: {}, headers: NO_STORE };
    }),
  );
  routes.set(
    "POST /oauth2/introspect",
    endpoint(deps.logger, async (request) => ({
      status: 200,
      json: await deps.oauth.introspect(request),
      headers: NO_STORE,
    })),
  );
  routes.set("GET /.well-known/oauth-authorization-server", async () => ({
    status: 200,
    json: { issuer: deps.urls.issuer(), jwks_uri: deps.urls.jwksUri(), ...oauthMetadata(deps.urls) },
    headers: { "cache-control": "public, max-age=300" },
  }));
  return routes;
}
