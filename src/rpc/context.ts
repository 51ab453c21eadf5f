import { createContextKey } from "@connectrpc/connect";
import type { ClientInfo, Principal } from "../core/model.ts";

/** Who is calling, resolved once per request from the socket and trusted proxy headers. */
export const kClient = createContextKey<ClientInfo>(
  { ip: null, userAgent: null, requestId: null, deviceId: null },
  { description: "client info" },
);

export const kRequestId = createContextKey<string | null>(null, { description: "request id" });

/** The verified caller of an authenticated RPC (set by the auth interceptor). */
export const kPrincipal = createContextKey<Principal | null>(null, { description: "principal" });

/** The admin key an AdminService call was made with (set by the admin interceptor). */
export const kAdminActor = createContextKey<{ name: string } | null>(null, { description: "admin actor" });

/**
 * The access-log record of one HTTP request: the handler sets protocol and route, the
 * telemetry interceptor the RPC's outcome (left undefined when the call never reached the
 * method: the request was malformed).
 */
export interface AccessRecord {
  /** `rest`, `connect`, `grpc`, `grpc-web`, or `http` for plain endpoints and unmatched paths. */
  protocol: string;
  /** The RPC path, REST route template or plain path; null when nothing matched. */
  route: string | null;
  /** `ok` or the stable error code, once the RPC ran. */
  code: string | undefined;
  /** The body could not be decoded (refused as `invalid_request`; counted as malformed too). */
  malformed?: boolean;
  /** The client's address (X-Forwarded-For behind trusted proxies) and its key, found once per request. */
  client?: { ip: string | null; addressKey: string | null };
}

export const kAccess = createContextKey<AccessRecord | null>(null, { description: "access record" });
