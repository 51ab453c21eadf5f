import type { Tracer } from "@opentelemetry/api";
import { oauthClientKeys, oauthClients } from "../config/to-deps.ts";
import { httpHandlerSettings, publishedExtras } from "../config/to-options.ts";
import { createOAuthService } from "../core/oauth.ts";
import { adminInterceptor } from "../rpc/admin-interceptor.ts";
import { authInterceptor } from "../rpc/auth-interceptor.ts";
import { errorInterceptor } from "../rpc/errors.ts";
import { createHttpHandler } from "../rpc/http-handler.ts";
import { createOAuthRoutes } from "../rpc/oauth-routes.ts";
import { createPlainRoutes } from "../rpc/plain-routes.ts";
import type { Readiness } from "../rpc/readiness.ts";
import { requestChecksInterceptor } from "../rpc/request-checks.ts";
import { adminKeyServicesOf, createRoutes, type ServedService, sessionPolicyOf } from "../rpc/routes.ts";
import { telemetryInterceptor, tracingInterceptor } from "../rpc/telemetry-interceptor.ts";
import { createSingleUseStore } from "../store/single-use-store.ts";
import type { ServiceMetrics } from "../telemetry/metrics.ts";
import { createClientAssertionCheck } from "../tokens/client-assertions.ts";
import { createClientSecretCheck } from "../tokens/client-secrets.ts";
import type { DevIssuer } from "../tokens/dev-issuer.ts";
import type { ServiceParts } from "./parts.ts";
import type { CoreServices } from "./services.ts";

export interface ListenerDeps {
  parts: ServiceParts;
  cores: CoreServices;
  /** Every API service (app/services.ts), each with its access. */
  served: readonly ServedService[];
  metrics: ServiceMetrics;
  /** What GET /metrics serves: this process's metrics, or in a cluster every worker's. */
  servedMetrics: { render(): Promise<string>; contentType: string };
  tracer: Tracer | undefined;
  readiness: Readiness;
  notReadyReason: () => string;
  devIssuer: DevIssuer | undefined;
}

/**
 * The HTTP handler: every API service behind the interceptors (their access rules derived from
 * the services' modules), and beside them the plain endpoints and the OAuth door.
 */
export function createListener(deps: ListenerDeps) {
  const { parts, metrics } = deps;
  const extras = publishedExtras(parts.config);
  return createHttpHandler({
    ...httpHandlerSettings(parts.config),
    routes: createRoutes({ services: deps.served, readiness: deps.readiness, reflection: extras.reflection }),
    interceptors: interceptors(deps),
    logger: parts.logger,
    plain: createPlainRoutes({
      urls: parts.urls,
      jwks: () => parts.keyRing.jwks(),
      readiness: deps.readiness,
      notReadyReason: deps.notReadyReason,
      metrics: extras.metricsOnMainPort ? deps.servedMetrics : undefined,
      devIssuer: deps.devIssuer,
      webApp: extras.webApp,
      oauth: oauthDoor(parts, deps.cores),
    }),
    onMalformed: (protocol) => metrics.malformed(protocol),
  });
}

/** The interceptors, in the order a call meets them. */
function interceptors(deps: ListenerDeps) {
  const { parts, cores, served, tracer } = deps;
  return [
    telemetryInterceptor(deps.metrics),
    ...(tracer === undefined ? [] : [tracingInterceptor(tracer)]),
    errorInterceptor(parts.logger),
    // Undecodable bodies and control characters, before any credential is looked at.
    requestChecksInterceptor(),
    // Admin keys only, and only for the admin-key services; the user auth below never covers them.
    ...adminKeyServicesOf(served).map((service) => adminInterceptor(cores.adminKeys, { service })),
    authInterceptor(cores.sessions, sessionPolicyOf(served)),
  ];
}

/** The OAuth door: the same sign-in, refresh and VerifyMfa services as the RPCs. */
function oauthDoor(parts: ServiceParts, cores: CoreServices) {
  const { config, urls } = parts;
  return createOAuthRoutes({
    oauth: createOAuthService({
      clock: parts.clock,
      clients: oauthClients(config),
      secrets: createClientSecretCheck(),
      assertions: createClientAssertionCheck({
        keys: oauthClientKeys(config),
        audiences: () => [`${urls.base()}/oauth2/token`, urls.issuer()],
      }),
      marks: createSingleUseStore(parts.database.client),
      addressLimit: parts.addressLimit,
      signin: cores.signin,
      sessions: cores.sessions,
      mfa: cores.mfa,
    }),
    urls,
    logger: parts.logger,
  });
}
