// The package's entry: every service and message of identity.v1, and google.rpc.ErrorInfo (the
// stable error code rides in it). Compiled from the repository's gen/pb at `npm pack` (prepack).
// Generated from src/app/services.ts by scripts/generate-client-index.ts (npm run generate).
export * from "./dist/identity/v1/auth_service_pb.js";
export * from "./dist/identity/v1/user_service_pb.js";
export * from "./dist/identity/v1/mfa_service_pb.js";
export * from "./dist/identity/v1/admin_service_pb.js";
export * from "./dist/google/rpc/error_details_pb.js";
