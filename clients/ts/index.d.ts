// Types of the package's entry (index.js).
// Generated from src/app/services.ts by scripts/generate-client-index.ts (npm run generate).
export * from "./dist/identity/v1/auth_service_pb.js";
export * from "./dist/identity/v1/user_service_pb.js";
export * from "./dist/identity/v1/mfa_service_pb.js";
export * from "./dist/identity/v1/admin_service_pb.js";
export * from "./dist/google/rpc/error_details_pb.js";
