import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { file_google_rpc_error_details } from "../../gen/pb/google/rpc/error_details_pb.ts";
import { Health } from "../../gen/pb/grpc/health/v1/health_pb.ts";
import { type AdminFor, registerAdminService } from "./admin-service.ts";
import { type AuthServiceDeps, registerAuthService } from "./auth-service.ts";
import { registerHealthService } from "./health-service.ts";
import { registerMfaService } from "./mfa-service.ts";
import type { Readiness } from "./readiness.ts";
import { registerReflectionService } from "./reflection-service.ts";
import { registerUserService } from "./user-service.ts";
import type { PasswordService } from "../core/passwords.ts";
import type { PasskeyService } from "../core/passkeys.ts";

export interface RouteDeps extends AuthServiceDeps {
  passwords: PasswordService;
  passkeys: PasskeyService;
  adminFor: AdminFor;
  readiness: Readiness;
  /** Whether to serve gRPC reflection (it hands out the whole schema, AdminService included). */
  reflection: boolean;
}

/**
 * The one registration function: every Connect service the server answers, for the Node adapter
 * (rpc/http-handler.ts, which derives the REST routes from what is registered here) and the
 * in-memory test transport alike. Health and reflection describe whatever was registered before
 * them, so a new service is added here once and nowhere else.
 */
export function createRoutes(deps: RouteDeps): (router: ConnectRouter) => void {
  return (router) => {
    registerAuthService(deps)(router);
    registerUserService(deps)(router);
    registerMfaService(deps)(router);
    registerAdminService(deps)(router);
    const served = [...servicesOf(router), Health];
    registerHealthService({ readiness: deps.readiness, services: served.map((s) => s.typeName) })(router);
    if (deps.reflection) registerReflectionService({ services: served, files: [file_google_rpc_error_details] })(router);
  };
}

/** The services registered on `router` so far, in registration order. */
function servicesOf(router: ConnectRouter): DescService[] {
  return [...new Set(router.handlers.map((h) => h.service))];
}
