import { createContextKey } from "@connectrpc/connect";
import type { ClientInfo } from "../core/model.ts";

/** Who is calling, resolved once per request from the socket and trusted proxy headers. */
export const kClient = createContextKey<ClientInfo>(
  { ip: null, userAgent: null, requestId: null, deviceId: null },
  { description: "client info" },
);

export const kRequestId = createContextKey<string | null>(null, { description: "request id" });
