import type { DescMethod, DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { file_google_rpc_error_details } from "../../gen/pb/google/rpc/error_details_pb.ts";
import { Health } from "../../gen/pb/grpc/health/v1/health_pb.ts";
import type { AuthPolicy } from "./auth-interceptor.ts";
import { registerHealthService } from "./health-service.ts";
import type { Readiness } from "./readiness.ts";
import { registerReflectionService } from "./reflection-service.ts";

/**
 * Who may call a service's methods; the interceptors enforce it (rpc/auth-interceptor.ts,
 * rpc/admin-interceptor.ts), so a handler never sees a call its service's access refuses.
 */
export type ServiceAccess =
  /** Anyone; the `sessionOptional` methods also take a user's access token when one is sent. */
  | { kind: "public"; sessionOptional?: readonly DescMethod[] }
  /** Every method needs a user's access token whose session is live. */
  | { kind: "session" }
  /** Every method needs an admin key; a user's access token is never one. */
  | { kind: "admin-key" };

/** A Connect service as the server serves it: its descriptor, who may call it, its handlers. */
export interface ServedService {
  service: DescService;
  access: ServiceAccess;
  register: (router: ConnectRouter) => void;
}

export interface RouteDeps {
  /** Every API service, in the order they are registered (and listed by health and reflection). */
  services: readonly ServedService[];
  readiness: Readiness;
  /** Whether to serve gRPC reflection (it hands out the whole schema, AdminService included). */
  reflection: boolean;
}

/**
 * The files a client needs besides the services' own: google.rpc.ErrorInfo, in which the stable
 * error code rides (reflection hands it out; the client package exports it).
 */
export const SUPPORT_FILES = [file_google_rpc_error_details];

/**
 * The one registration function: every Connect service the server answers, for the Node adapter
 * (rpc/http-handler.ts, which derives the REST routes from what is registered here) and the
 * in-memory test transport alike. Health and reflection describe whatever was registered before
 * them, so a service given in `services` is served everywhere and needs nothing else.
 */
export function createRoutes(deps: RouteDeps): (router: ConnectRouter) => void {
  return (router) => {
    for (const s of deps.services) s.register(router);
    const served = [...servicesOf(router), Health];
    registerHealthService({ readiness: deps.readiness, services: served.map((s) => s.typeName) })(router);
    if (deps.reflection) registerReflectionService({ services: served, files: SUPPORT_FILES })(router);
  };
}

/** The auth interceptor's policy, from the services' access: which need a session, which take one. */
export function sessionPolicyOf(services: readonly ServedService[]): AuthPolicy {
  return {
    required: new Set(services.filter((s) => s.access.kind === "session").map((s) => s.service.typeName)),
    optional: new Set(
      services.flatMap(({ service, access }) =>
        access.kind === "public" ? (access.sessionOptional ?? []).map((m) => `${service.typeName}/${m.name}`) : [],
      ),
    ),
  };
}

/** The services (type names) that only admin keys open. */
export function adminKeyServicesOf(services: readonly ServedService[]): string[] {
  return services.filter((s) => s.access.kind === "admin-key").map((s) => s.service.typeName);
}

/** The services registered on `router` so far, in registration order. */
function servicesOf(router: ConnectRouter): DescService[] {
  return [...new Set(router.handlers.map((h) => h.service))];
}
