import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import type { ServedService, ServiceAccess } from "../rpc/routes.ts";
import type { ServiceParts } from "./parts.ts";
import { adminService } from "./services/admin.ts";
import { authService } from "./services/auth.ts";
import { mfaService } from "./services/mfa.ts";
import { userService } from "./services/user.ts";

/**
 * One API service in one module (app/services/<name>.ts): its descriptor, who may call it, the
 * core services it owns (built from the config and the app's shared parts) and the registration
 * of its handlers.
 */
export interface ServiceModule<Owns extends object, Needs> {
  service: DescService;
  access: ServiceAccess;
  /**
   * Builds the core services this module owns, from the shared parts alone (never from another
   * module's), under names no other module uses; other modules' handlers, the interceptors and
   * the OAuth door may use them too.
   */
  build(parts: ServiceParts): Owns;
  /** The handlers, over the core services they take (any module's). */
  register(cores: Needs): (router: ConnectRouter) => void;
}

/**
 * Every API service, in registration order (which health and reflection list): the one place a
 * service is registered. The routes, the interceptors' policies, the fuzz suite's services and
 * the client package's index (scripts/generate-client-index.ts) all come from this list.
 */
export const SERVICE_MODULES = [authService, userService, mfaService, adminService] as const;

type Owned = ReturnType<(typeof SERVICE_MODULES)[number]["build"]>;
type Intersection<U> = (U extends unknown ? (u: U) => void : never) extends (i: infer I) => void ? I : never;

/** Every core service the modules build, by name (what the handlers, interceptors and OAuth use). */
export type CoreServices = Intersection<Owned>;

/** The core services of every module, and every service as the routes serve it. */
export function buildServices(parts: ServiceParts): { cores: CoreServices; served: ServedService[] } {
  const cores: Record<string, unknown> = {};
  for (const module of SERVICE_MODULES) {
    for (const [name, core] of Object.entries(module.build(parts))) {
      if (name in cores) {
        throw new Error(`${module.service.typeName} builds ${name}, which another service module built already`);
      }
      cores[name] = core;
    }
  }
  const all = cores as CoreServices;
  const served = SERVICE_MODULES.map((m) => ({ service: m.service, access: m.access, register: m.register(all) }));
  return { cores: all, served };
}
