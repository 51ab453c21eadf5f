import { randomUUID } from "node:crypto";
import type * as http from "node:http";
import type * as http2 from "node:http2";
import { type BlockList, isIP } from "node:net";
import { type DescMethod, type DescService, fromJson, type JsonValue, type Message, toJsonString } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type ContextValues,
  createConnectRouter,
  createContextValues,
  createHandlerContext,
  createServiceImplSpec,
  type Interceptor,
  type MethodImplSpec,
} from "@connectrpc/connect";
import { invokeUnaryImplementation, type UniversalHandler } from "@connectrpc/connect/protocol";
import {
  compressionBrotli,
  compressionGzip,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import { ErrorInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";
import type { ErrorCode } from "../core/errors.ts";
import { addressListOf, isListed } from "../core/address-list.ts";
import { withoutControlCharacters } from "../core/plain-text.ts";
import type { Logger } from "../logger.ts";
import { type AccessRecord, kAccess, kClient, kRequestId } from "./context.ts";
import { clipDeviceId } from "./auth-service.ts";
import { ERROR_TABLE, httpStatusOf, statusName } from "./error-codes.ts";
import { describeCause } from "./errors.ts";
import { queryParamValue, type RestRoute, restRoutesFrom } from "./rest-routes.ts";
import { screenedRequest } from "./body-screening.ts";
import { decodeOrMark } from "./request-checks.ts";
import { isPlainConnectUnary, isPlainGrpcUnary, serveConnectUnary, serveGrpcUnary } from "./unary-fast-path.ts";

export type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

/** A plain HTTP endpoint beside the RPCs (health, JWKS, discovery, dev issuer). */
export type PlainHandler = (
  req: NodeRequest,
  body: () => Promise<unknown>,
) => Promise<{ status: number; headers?: Record<string, string> } & ({ json: unknown } | { text: string })>;

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
}

/** Request compressions accepted (connect-es and the screening in front of it alike). */
const COMPRESSIONS = [compressionGzip, compressionBrotli] as const;

const CORS_ALLOW_HEADERS = [
  "authorization", "content-type", "connect-protocol-version", "connect-timeout-ms",
  "grpc-timeout", "x-grpc-web", "x-user-agent", "x-device-id", "x-request-id", "x-admin-key",
  "traceparent", "tracestate",
].join(", ");
const CORS_EXPOSE_HEADERS = ["retry-after", "grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id"].join(", ");

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
  const restRoutes = restRoutesFrom(services);
  const proxies = addressListOf(options.trustedProxies);
  const allowedOrigins = new Set(options.corsAllowedOrigins);

  function clientOf(req: NodeRequest, requestId: string, access: AccessRecord): ContextValues {
    const header = (name: string) => {
      const v = req.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    return createContextValues()
      .set(kRequestId, requestId)
      .set(kAccess, access)
      .set(kClient, {
        ip: clientIp(req.socket.remoteAddress ?? null, header("x-forwarded-for"), proxies),
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
        res.setHeader("access-control-allow-methods", "GET, POST, PUT, PATCH, DELETE");
        res.setHeader("access-control-allow-headers", CORS_ALLOW_HEADERS);
        res.setHeader("access-control-max-age", String(options.corsMaxAgeSeconds));
      }
      head(res, corsAllowed ? 204 : 403, {});
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
        await serveGrpcUnary(req as http2.Http2ServerRequest, res as http2.Http2ServerResponse, spec, { ...fast, contextValues: clientOf(req, requestId, access) });
        return;
      }
      if (isPlainConnectUnary(req, spec)) {
        access.protocol = "connect";
        await serveConnectUnary(req, res, spec, { ...fast, contextValues: clientOf(req, requestId, access) });
        return;
      }
      access.protocol = rpcProtocolOf(req);
      const uReq = await screenedRequest(req, res, spec, clientOf(req, requestId, access), { ...fast, compressions: COMPRESSIONS });
      const uRes = await rpc(uReq);
      // Its promise waits for an "end" event that a Node response never emits, so it never
      // resolves after success: the response's own "close" says the answer is out.
      await Promise.race([universalResponseToNodeResponse(uRes, res), new Promise((resolve) => res.once("close", resolve))]);
      return;
    }

    const plain = options.plain.get(`${req.method} ${url.pathname}`);
    if (plain !== undefined) {
      access.route = url.pathname;
      const out = await plain(req, () => readJsonBody(req, options.bodyLimitBytes));
      if ("text" in out) {
        head(res, out.status, { "content-type": "text/plain; charset=utf-8", ...out.headers });
        res.end(out.text);
      } else {
        sendJson(res, out.status, out.json, out.headers);
      }
      return;
    }

    let pathMatched = false;
    for (const route of restRoutes) {
      const params = route.match(url.pathname);
      if (params === null) continue;
      pathMatched = true;
      access.protocol = "rest";
      access.route = route.template;
      if (route.httpMethod !== req.method) continue;
      await handleRest(route, params, url, req, res, requestId, access);
      return;
    }
    if (pathMatched) {
      sendError(res, "method_not_allowed", `${req.method} is not allowed here`);
      return;
    }
    sendError(res, "not_found", `no route for ${req.method} ${url.pathname}`);
  }

  async function handleRest(
    route: RestRoute,
    params: Record<string, string>,
    url: URL,
    req: NodeRequest,
    res: NodeResponse,
    requestId: string,
    access: AccessRecord,
  ): Promise<void> {
    let message: Record<string, JsonValue> = {};
    let malformed: Error | null = null;
    if (route.body !== "") {
      const type = String(req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
      // No body and no type is an empty message (every field is optional, `curl -X POST` sends
      // neither); any body at all must say it is JSON.
      const untyped = type === "" && (await isBodyEmpty(req));
      if (type !== "application/json" && !untyped) {
        sendError(res, "unsupported_media_type", "send the request body as JSON with Content-Type: application/json");
        return;
      }
      let body: unknown = {};
      try {
        if (!untyped) body = await readJsonBody(req, options.bodyLimitBytes);
      } catch (e) {
        if (!(e instanceof BodyError) || e.code !== "invalid_request") throw e;
        malformed = e;
      }
      // A malformed body is refused by the interceptors, as on every other protocol.
      if (malformed === null && route.body === "*") {
        if (typeof body !== "object" || body === null || Array.isArray(body)) malformed = new Error("the body is not a JSON object");
        else message = body as Record<string, JsonValue>;
      } else if (malformed === null) {
        message[route.body] = body as JsonValue;
      }
    }
    for (const [key, value] of url.searchParams) {
      if (route.body !== "*") message[key] = queryParamValue(route.method.input, key, value);
    }
    Object.assign(message, params);
    sendRestResult(res, await invokeRest(route.method, () => {
      if (malformed !== null) throw malformed;
      return fromJson(route.method.input, message, jsonOptions);
    }, req, requestId, access));
  }

  /**
   * A REST call: the JSON message decoded with the proto's rules, the method's implementation
   * run through the same interceptors as every protocol (auth, admin keys, errors, metrics),
   * the answer encoded as JSON, or the error as the REST error body.
   */
  async function invokeRest(
    method: DescMethod,
    decode: () => Message,
    req: NodeRequest,
    requestId: string,
    access: AccessRecord,
  ): Promise<{ status: number; json: string; headers?: Record<string, string> }> {
    const spec = implByMethod.get(`${method.parent.typeName}/${method.name}`);
    if (spec === undefined || spec.kind !== "unary") throw new Error(`no unary implementation for ${method.name}`);
    const header = new Headers();
    for (const name of REST_FORWARDED_HEADERS) {
      const v = req.headers[name];
      if (typeof v === "string") header.set(name, v);
    }
    // Aborted only if the client goes away before the answer (an abort per call costs a DOMException).
    const abort = new AbortController();
    const onClose = () => abort.abort();
    req.once("close", onClose);
    try {
      const context = createHandlerContext({
        service: method.parent,
        method,
        protocolName: "rest",
        requestMethod: req.method ?? "POST",
        url: `http://localhost/${method.parent.typeName}/${method.name}`,
        requestHeader: header,
        requestSignal: abort.signal,
        contextValues: clientOf(req, requestId, access),
      });
      const input = decodeOrMark(method.input, context, decode);
      const output = await invokeUnaryImplementation(spec, context, input, options.interceptors);
      return { status: 200, json: toJsonString(method.output, output, jsonOptions) };
    } catch (e) {
      const error = ConnectError.from(e);
      // The stable domain code rides in the ErrorInfo detail that errors.ts attaches.
      const info = error.findDetails(ErrorInfoSchema)[0];
      const retryAfter = error.metadata.get("retry-after");
      return {
        status: httpStatusOf(error.code),
        ...(retryAfter === null ? {} : { headers: { "retry-after": retryAfter } }),
        json: JSON.stringify({
          code: info?.reason ?? (error.code === Code.InvalidArgument ? "invalid_request" : statusName(error.code)),
          message: error.rawMessage,
          status: statusName(error.code),
          ...(info !== undefined && Object.keys(info.metadata).length > 0 ? { details: info.metadata } : {}),
        }),
      };
    } finally {
      req.off("close", onClose);
    }
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
      await handle(req, res, requestId, access);
    } catch (e) {
      if (e instanceof BodyError) {
        sendError(res, e.code, e.message);
      } else {
        // A client that went away mid-request is no failure of ours (and anyone could fill the
        // error log with them).
        const gone = res.destroyed || (req.socket?.destroyed ?? false);
        options.logger[gone ? "debug" : "error"](gone ? "client went away" : "request failed", { path: (req.url ?? "").split("?")[0], cause: describeCause(e) });
        if (!gone) {
          if (!res.headersSent) sendError(res, "internal", "internal error");
          else res.destroy();
        }
      }
    }
    // An RPC or REST route whose body could not be decoded (its RPC refused it as invalid_request),
    // or whose method never ran (wrong content type, too large, wrong HTTP method).
    if (access.malformed === true || (access.code === undefined && access.protocol !== "http")) options.onMalformed?.(access.protocol);
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
  const routes = [...restRoutes.map((r) => `${r.httpMethod} ${r.template}`), ...options.plain.keys()];
  return Object.assign(listener, { routes });
}

/** The protocol of an RPC request that connect-es serves, by its content type. */
function rpcProtocolOf(req: NodeRequest): string {
  const type = req.headers["content-type"] ?? "";
  if (type.startsWith("application/grpc-web")) return "grpc-web";
  if (type.startsWith("application/grpc")) return "grpc";
  return "connect";
}

class BodyError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

async function readJsonBody(req: NodeRequest, limit: number): Promise<unknown> {
  const declared = Number(req.headers["content-length"] ?? "0");
  if (declared > limit) throw new BodyError("request_too_large", `the request body exceeds ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new BodyError("request_too_large", `the request body exceeds ${limit} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new BodyError("invalid_request", "the request body is not valid JSON");
  }
}

/**
 * Whether a request without Content-Type has no body: HTTP/1.1 says so in its headers; over
 * HTTP/2 the stream may already have ended. Otherwise it is treated as a body (refused untyped).
 */
async function isBodyEmpty(req: NodeRequest): Promise<boolean> {
  const length = req.headers["content-length"];
  if (length !== undefined) return length === "0";
  if (req.httpVersionMajor === 1) return req.headers["transfer-encoding"] === undefined;
  if (req.readableEnded) return true;
  // HTTP/2 without content-length: wait for the first chunk or the end of the stream.
  return new Promise<boolean>((resolve) => {
    const done = (empty: boolean) => {
      req.off("end", onEnd);
      req.off("readable", onReadable);
      resolve(empty);
    };
    const onEnd = () => done(true);
    const onReadable = () => {
      const chunk = req.read() as Buffer | null;
      if (chunk === null) return; // end follows
      req.unshift(chunk);
      done(chunk.length === 0);
    };
    req.on("end", onEnd);
    req.on("readable", onReadable);
  });
}

/** Headers a REST call passes on to the implementation and its interceptors. */
const REST_FORWARDED_HEADERS = ["authorization", "x-admin-key", "user-agent", "x-device-id", "accept-language", "traceparent", "tracestate"];

function sendRestResult(res: NodeResponse, result: { status: number; json: string; headers?: Record<string, string> }): void {
  head(res, result.status, { "content-type": "application/json", "cache-control": "no-store", ...result.headers });
  res.end(result.json);
}

function sendJson(res: NodeResponse, status: number, json: unknown, headers?: Record<string, string>): void {
  const body = JSON.stringify(json);
  head(res, status, { "content-type": "application/json", "cache-control": "no-store", ...headers });
  res.end(body);
}

/** writeHead for either response type (their overloads do not unify). */
function head(res: NodeResponse, status: number, headers: Record<string, string>): void {
  (res as http.ServerResponse).writeHead(status, headers);
}

export function sendError(res: NodeResponse, code: ErrorCode, message: string): void {
  const entry = ERROR_TABLE[code];
  sendJson(res, entry.http ?? httpStatusOf(entry.code), { code, message, status: statusName(entry.code) });
}

/**
 * The client's address: the socket peer, or, behind trusted proxies, the nearest hop of
 * X-Forwarded-For (read from the right) that is not itself a trusted proxy. Hops may carry a port
 * or brackets (`203.0.113.7:5150`, `[2001:db8::1]:443`); an unparsable hop (`unknown`, an
 * obfuscated name) stops the walk at the last trusted proxy, never skipping to an earlier hop the
 * client may have written itself.
 */
export function clientIp(peer: string | null, forwardedFor: string | undefined, proxies: BlockList): string | null {
  if (peer === null) return null;
  let ip = normalizeAddress(peer);
  if (forwardedFor === undefined) return ip;
  const hops = forwardedFor.split(",");
  while (isListed(proxies, ip) && hops.length > 0) {
    const hop = parseHop(hops.pop()!);
    if (hop === null) break;
    ip = hop;
  }
  return ip;
}

function normalizeAddress(address: string): string {
  return address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, "");
}

/** One X-Forwarded-For hop as an address without port or brackets, or null when it is none. */
function parseHop(raw: string): string | null {
  let hop = raw.trim();
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(hop);
  if (bracketed !== null) hop = bracketed[1]!;
  else if (/^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/.test(hop)) hop = hop.slice(0, hop.lastIndexOf(":"));
  hop = normalizeAddress(hop);
  return isIP(hop) === 0 ? null : hop;
}

function userAgentOf(v: string | undefined): string | null {
  return v === undefined ? null : withoutControlCharacters(v);
}

function sanitizeRequestId(v: string | string[] | undefined): string | null {
  const s = Array.isArray(v) ? v[0] : v;
  return s !== undefined && /^[A-Za-z0-9._:-]{1,128}$/.test(s) ? s : null;
}
