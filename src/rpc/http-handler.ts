import { randomUUID } from "node:crypto";
import * as http2 from "node:http2";
import type { DescService } from "@bufbuild/protobuf";
import {
  type ConnectRouter,
  type ContextValues,
  cors as connectCors,
  createConnectRouter,
  createContextValues,
  createServiceImplSpec,
  type Interceptor,
  type MethodImplSpec,
} from "@connectrpc/connect";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { type AddressPrefixes, addressKeyOf, addressListOf, isListed } from "../core/address-list.ts";
import type { ClientInfo } from "../core/model.ts";
import type { Logger } from "../logger.ts";
import { type AccessRecord, kAccess, kClient, kRequestId } from "./context.ts";
import { clipDeviceId } from "./auth-service.ts";
import { clientIp, normalizeAddress, sanitizeRequestId, userAgentOf } from "./client-info.ts";
import { describeCause } from "./errors.ts";
import {
  BodyError,
  type NodeRequest,
  type NodeResponse,
  readJsonBody,
  readTextBody,
  sendError,
  sendJson,
  writeHead,
} from "./http-io.ts";
import { createRestTranscoder } from "./rest-transcoder.ts";
import { screenedRequest } from "./body-screening.ts";
import { isPlainConnectUnary, isPlainGrpcUnary, serveConnectUnary, serveGrpcUnary } from "./unary-fast-path.ts";

/** A plain HTTP endpoint beside the RPCs (health, JWKS, discovery, dev issuer). */
export type PlainHandler = (
  req: NodeRequest,
  body: () => Promise<unknown>,
  request: PlainRequest,
) => Promise<{ status: number; headers?: Record<string, string> } & ({ json: unknown } | { text: string })>;

/** What a plain endpoint may need beyond the JSON body: the raw body (forms), and who is calling. */
export interface PlainRequest {
  text(): Promise<string>;
  client: ClientInfo;
}

export interface HttpHandlerOptions {
  /**
   * Registers every Connect service: the one registration function for all transports
   * (rpc/routes.ts). The REST routes come from the `google.api.http` options of what it registers.
   */
  routes: (router: ConnectRouter) => void;
  interceptors: Interceptor[];
  logger: Logger;
  bodyLimitBytes: number;
  corsAllowedOrigins: readonly string[];
  corsMaxAgeSeconds: number;
  /** CIDRs (or addresses) of proxies whose X-Forwarded-For we believe. */
  trustedProxies: readonly string[];
  /** "GET /healthz" -> handler. */
  plain: ReadonlyMap<string, PlainHandler>;
  /** Told of each request for an RPC or REST route that never reached the method (metrics). */
  onMalformed?: ((protocol: string) => void) | undefined;
  /**
   * Requests in flight from one client address (behind trusted proxies: the forwarded one) at
   * most; more are answered 429 at once, so one address cannot hold every handler.
   */
  maxRequestsPerAddress: number;
  /** How client addresses are grouped for every per-address limit (IPv6: by prefix). */
  addressPrefixes: AddressPrefixes;
}

/** Request compressions accepted (connect-es and the screening in front of it alike). */
const COMPRESSIONS = [compressionGzip, compressionBrotli] as const;
const { NGHTTP2_REFUSED_STREAM } = http2.constants;

/**
 * CORS lists: what Connect, gRPC-Web and their browser clients need (connect-es's `cors`), plus our own
 * headers: credentials, device and request ids, the admin key, W3C trace context; REST's other methods;
 * the wait of a 429 and the request id back.
 */
const CORS_ALLOW_METHODS = [...connectCors.allowedMethods, "PUT", "PATCH", "DELETE"].join(", ");
const CORS_ALLOW_HEADERS = headerList([
  ...connectCors.allowedHeaders,
  "authorization",
  "x-device-id",
  "x-request-id",
  "x-admin-key",
  "traceparent",
  "tracestate",
]);
const CORS_EXPOSE_HEADERS = headerList([...connectCors.exposedHeaders, "retry-after", "x-request-id"]);

/** Header names as one header value, lower-cased (connect-es spells them `Content-Type`), each once. */
function headerList(names: readonly string[]): string {
  return [...new Set(names.map((name) => name.toLowerCase()))].join(", ");
}

/**
 * One request listener for HTTP/1.1 and HTTP/2 alike, serving Connect, gRPC and gRPC-Web (through
 * connect-node's universal handlers) and REST JSON transcoded from `google.api.http` options onto
 * the same handlers, so interceptors, limits and errors are shared by all four protocols.
 */
export function createHttpHandler(options: HttpHandlerOptions) {
  // The proto's field names (snake_case) in Connect JSON and REST, and implicit fields (booleans,
  // token_type, expires_in) always present; `optional` fields stay absent when unset.
  const jsonOptions = { useProtoFieldName: true, alwaysEmitImplicit: true, ignoreUnknownFields: false } as const;
  const router = createConnectRouter({
    interceptors: options.interceptors,
    readMaxBytes: options.bodyLimitBytes,
    acceptCompression: [...COMPRESSIONS],
    // Answers are a few hundred bytes to a few KiB: compressing them costs more CPU than it
    // saves on the wire (requests are still decompressed when a client compresses them).
    compressMinBytes: 64 * 1024,
    jsonOptions,
  });
  // REST calls the same implementations through the same interceptors, without a protocol in
  // between: the registrations are recorded as they are made.
  const implByMethod = new Map<string, MethodImplSpec>();
  const implByPath = new Map<string, MethodImplSpec>();
  const services: DescService[] = [];
  options.routes({
    service(desc, impl, serviceOptions) {
      services.push(desc);
      for (const spec of Object.values(createServiceImplSpec(desc, impl).methods)) {
        implByMethod.set(`${desc.typeName}/${spec.method.name}`, spec);
        implByPath.set(`/${desc.typeName}/${spec.method.name}`, spec);
      }
      return router.service(desc, impl, serviceOptions);
    },
    rpc() {
      throw new Error("register whole services (router.service), so REST can find them");
    },
    get handlers() {
      return router.handlers;
    },
  } as ConnectRouter);
  const rpcByPath = new Map<string, UniversalHandler>();
  for (const h of router.handlers) {
    rpcByPath.set(h.requestPath, h);
  }
  const rest = createRestTranscoder({
    services,
    implementations: implByMethod,
    interceptors: options.interceptors,
    bodyLimitBytes: options.bodyLimitBytes,
    jsonOptions,
    contextValues: clientOf,
  });
  const proxies = addressListOf(options.trustedProxies);
  const allowedOrigins = new Set(options.corsAllowedOrigins);
  /** Requests in flight per client address. */
  const inFlight = new Map<string, number>();

  /**
   * Counts the request against its client's share; false (and a 429 written) when the client
   * already has `maxRequestsPerAddress` in flight. The count is released when the answer is done.
   */
  function admitRequest(req: NodeRequest, res: NodeResponse, access: AccessRecord): boolean {
    const key = addressOf(req, access).addressKey;
    if (key === null) return true;
    const held = inFlight.get(key) ?? 0;
    if (held >= options.maxRequestsPerAddress) {
      res.setHeader("retry-after", "1");
      // HTTP/1.1: the connection ends with the answer; HTTP/2: the stream is reset once answered,
      // so the client stops sending the body we will not read.
      if (req.httpVersionMajor === 1) res.setHeader("connection", "close");
      else res.once("finish", () => (req as http2.Http2ServerRequest).stream.close(NGHTTP2_REFUSED_STREAM));
      const message = "too many requests in flight from this address; try again in 1 s";
      const contentType = String(req.headers["content-type"] ?? "");
      if (/^application\/grpc(-web)?(\+|;|$)/.test(contentType)) {
        // gRPC and gRPC-Web clients read the status from grpc-status, not HTTP: a trailers-only
        // answer, RESOURCE_EXHAUSTED (what an HTTP 429 maps to), so they see the refusal as such.
        res.statusCode = 200;
        res.setHeader("content-type", contentType.split(";")[0]!);
        res.setHeader("grpc-status", "8");
        res.setHeader("grpc-message", encodeURIComponent(message));
        res.end();
        return false;
      }
      sendError(res, "rate_limited", message);
      return false;
    }
    inFlight.set(key, held + 1);
    res.once("close", () => {
      const left = (inFlight.get(key) ?? 1) - 1;
      if (left > 0) inFlight.set(key, left);
      else inFlight.delete(key);
    });
    return true;
  }

  /** The client's address and its key (IPv6: its prefix), found once per request. */
  function addressOf(req: NodeRequest, access: AccessRecord): { ip: string | null; addressKey: string | null } {
    if (access.client !== undefined) return access.client;
    const forwarded = req.headers["x-forwarded-for"];
    const ip = clientIp(
      req.socket?.remoteAddress ?? null,
      Array.isArray(forwarded) ? forwarded[0] : forwarded,
      proxies,
    );
    access.client = { ip, addressKey: ip === null ? null : addressKeyOf(ip, options.addressPrefixes) };
    return access.client;
  }

  function clientOf(req: NodeRequest, requestId: string, access: AccessRecord): ContextValues {
    const header = (name: string) => {
      const v = req.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    const { ip, addressKey } = addressOf(req, access);
    return createContextValues()
      .set(kRequestId, requestId)
      .set(kAccess, access)
      .set(kClient, {
        ip,
        addressKey,
        userAgent: userAgentOf(header("user-agent")),
        requestId,
        deviceId: clipDeviceId(header("x-device-id")),
      });
  }

  function cors(req: NodeRequest, res: NodeResponse): boolean {
    // Every answer depends on Origin (cacheable ones too: JWKS, discovery), allowed or not.
    res.setHeader("vary", "origin");
    const origin = req.headers.origin;
    if (typeof origin !== "string" || !(allowedOrigins.has(origin) || allowedOrigins.has("*"))) return false;
    res.setHeader("access-control-allow-origin", origin);
    res.setHeader("access-control-expose-headers", CORS_EXPOSE_HEADERS);
    return true;
  }

  async function handle(req: NodeRequest, res: NodeResponse, requestId: string, access: AccessRecord): Promise<void> {
    res.setHeader("x-request-id", requestId);
    const url = new URL(req.url ?? "/", "http://localhost");
    const corsAllowed = cors(req, res);
    if (req.method === "OPTIONS") {
      if (corsAllowed) {
        res.setHeader("access-control-allow-methods", CORS_ALLOW_METHODS);
        res.setHeader("access-control-allow-headers", CORS_ALLOW_HEADERS);
        res.setHeader("access-control-max-age", String(options.corsMaxAgeSeconds));
      }
      writeHead(res, corsAllowed ? 204 : 403, {});
      res.end();
      return;
    }

    const rpc = rpcByPath.get(url.pathname);
    if (rpc !== undefined) {
      access.route = rpc.requestPath;
      // RPC answers carry tokens, secrets or personal data: never stored by a cache or browser
      // (RFC 6749 §5.1 for token responses), whichever protocol carried them.
      res.setHeader("cache-control", "no-store");
      const spec = implByPath.get(url.pathname);
      const fast = { interceptors: options.interceptors, readMaxBytes: options.bodyLimitBytes, jsonOptions };
      if (req.httpVersionMajor === 2 && isPlainGrpcUnary(req as http2.Http2ServerRequest, spec)) {
        access.protocol = "grpc";
        await serveGrpcUnary(req as http2.Http2ServerRequest, res as http2.Http2ServerResponse, spec, {
          ...fast,
          contextValues: clientOf(req, requestId, access),
        });
        return;
      }
      if (isPlainConnectUnary(req, spec)) {
        access.protocol = "connect";
        await serveConnectUnary(req, res, spec, { ...fast, contextValues: clientOf(req, requestId, access) });
        return;
      }
      access.protocol = rpcProtocolOf(req);
      const uReq = await screenedRequest(req, res, spec, clientOf(req, requestId, access), {
        ...fast,
        compressions: COMPRESSIONS,
      });
      const uRes = await rpc(uReq);
      // Its promise waits for an "end" event that a Node response never emits, so it never
      // resolves after success: the response's own "close" says the answer is out.
      await Promise.race([
        universalResponseToNodeResponse(uRes, res),
        new Promise((resolve) => res.once("close", resolve)),
      ]);
      return;
    }

    const plain = options.plain.get(`${req.method} ${url.pathname}`);
    if (plain !== undefined) {
      access.route = url.pathname;
      const out = await plain(req, () => readJsonBody(req, options.bodyLimitBytes), {
        text: () => readTextBody(req, options.bodyLimitBytes),
        client: clientOf(req, requestId, access).get(kClient),
      });
      if ("text" in out) {
        writeHead(res, out.status, { "content-type": "text/plain; charset=utf-8", ...out.headers });
        res.end(out.text);
      } else {
        sendJson(res, out.status, out.json, out.headers);
      }
      return;
    }

    const restCall = rest.serve(req, res, url, requestId, access);
    if (restCall !== undefined) {
      await restCall;
      return;
    }
    sendError(res, "not_found", `no route for ${req.method} ${url.pathname}`);
  }

  /**
   * Serves one request and writes its access-log line: one line per request, at info, for every
   * protocol and path (REST, the Connect router, the unary fast path, plain endpoints).
   */
  async function serve(req: NodeRequest, res: NodeResponse): Promise<void> {
    const started = performance.now();
    const requestId = sanitizeRequestId(req.headers["x-request-id"]) ?? randomUUID();
    const access: AccessRecord = { protocol: "http", route: null, code: undefined };
    try {
      if (admitRequest(req, res, access)) await handle(req, res, requestId, access);
      else access.code = "rate_limited";
    } catch (e) {
      if (e instanceof BodyError) {
        sendError(res, e.code, e.message);
      } else {
        // A client that went away mid-request is no failure of ours (and anyone could fill the
        // error log with them).
        const gone = res.destroyed || (req.socket?.destroyed ?? false);
        options.logger[gone ? "debug" : "error"](gone ? "client went away" : "request failed", {
          path: (req.url ?? "").split("?")[0],
          cause: describeCause(e),
        });
        if (!gone) {
          if (!res.headersSent) sendError(res, "internal", "internal error");
          else res.destroy();
        }
      }
    }
    // An RPC or REST route whose body could not be decoded (its RPC refused it as invalid_request),
    // or whose method never ran (wrong content type, too large, wrong HTTP method).
    if (access.malformed === true || (access.code === undefined && access.protocol !== "http"))
      options.onMalformed?.(access.protocol);
    options.logger.info("request", {
      method: req.method,
      route: access.route,
      status: res.statusCode,
      duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
      request_id: requestId,
      protocol: access.protocol,
      code: access.code, // absent from the line when undefined
    });
  }

  const listener = function listener(req: NodeRequest, res: NodeResponse): void {
    void serve(req, res);
  };
  /** What the server answers besides RPC paths: REST routes and plain endpoints, as "METHOD /path". */
  const routes = [...rest.routes, ...options.plain.keys()];
  /** What a connection's peer is counted under (server.ts): null for a trusted proxy, which carries many clients. */
  const connectionKey = (peer: string): string | null => {
    const ip = normalizeAddress(peer);
    return isListed(proxies, ip) ? null : addressKeyOf(ip, options.addressPrefixes);
  };
  return Object.assign(listener, { routes, connectionKey });
}

/** The protocol of an RPC request that connect-es serves, by its content type. */
function rpcProtocolOf(req: NodeRequest): string {
  const type = req.headers["content-type"] ?? "";
  if (type.startsWith("application/grpc-web")) return "grpc-web";
  if (type.startsWith("application/grpc")) return "grpc";
  return "connect";
}
