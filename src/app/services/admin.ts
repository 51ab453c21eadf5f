import { AdminService } from "../../../gen/pb/identity/v1/admin_service_pb.ts";
import type { AdminKeyVerifier } from "../../core/ports/admin.ts";
import { type AdminFor, registerAdminService } from "../../rpc/admin-service.ts";
import { createAdminApi } from "../admin.ts";
import type { ServiceModule } from "../services.ts";

/**
 * AdminService: operators' user management over the core's AdminService (the one the admin tool
 * uses). Admin keys only (`admin.api_keys`; none configured: every call refused); a user's access
 * token never opens it. `adminKeys` is the verifier the admin interceptor checks them with.
 */
export const adminService: ServiceModule<{ adminFor: AdminFor; adminKeys: AdminKeyVerifier }, { adminFor: AdminFor }> =
  {
    service: AdminService,
    access: { kind: "admin-key" },
    build: (parts) => createAdminApi(parts.config, parts),
    register: registerAdminService,
  };
