import {
  type DescMethod,
  type DescService,
  fromJson,
  type JsonValue,
  type Message,
  toJsonString,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createHandlerContext,
  type Interceptor,
  type MethodImplSpec,
} from "@connectrpc/connect";
import { invokeUnaryImplementation } from "@connectrpc/connect/protocol";
import { DomainError } from "../core/errors.ts";
import type { AccessRecord } from "./context.ts";
import { ERROR_TABLE, httpStatusOf, statusName } from "./error-codes.ts";
import { retryAfterSeconds } from "./errors.ts";
import { queryParamValue, type RestRoute, restRoutesFrom } from "./rest-routes.ts";
import { decodeOrMark } from "./request-checks.ts";
import { BodyError, type NodeRequest, type NodeResponse, readJsonBody, sendError, writeHead } from "./http-io.ts";

/** The JSON of an answer: proto field names (snake_case), implicit fields always present. */
type JsonOptions = { useProtoFieldName: true; alwaysEmitImplicit: true; ignoreUnknownFields: false };

export interface RestTranscoderOptions {
  /** The registered services: each annotated unary RPC gets its route. */
  services: readonly DescService[];
  /** The implementation of each method, by "package.Service/Method". */
  implementations: ReadonlyMap<string, MethodImplSpec>;
  interceptors: Interceptor[];
  bodyLimitBytes: number;
  jsonOptions: JsonOptions;
  /** The request's context values (client, request id, access record), as every protocol gets them. */
  contextValues: (req: NodeRequest, requestId: string, access: AccessRecord) => ContextValues;
}

/** The answer was written already. */
const ANSWERED: Promise<void> = Promise.resolve();

/** Headers a REST call passes on to the implementation and its interceptors. */
const REST_FORWARDED_HEADERS = [
  "authorization",
  "x-admin-key",
  "user-agent",
  "x-device-id",
  "accept-language",
  "traceparent",
  "tracestate",
];

/**
 * REST JSON transcoded from the `google.api.http` options onto the same implementations, through
 * the same interceptors (auth, admin keys, errors, metrics) as every protocol, without a protocol
 * in between: body, query and path variables make the message; the answer is the message as JSON,
 * a failure the REST error body made from the domain error itself.
 */
export function createRestTranscoder(options: RestTranscoderOptions) {
  const restRoutes = restRoutesFrom(options.services);
  const { jsonOptions } = options;

  /**
   * The answer to `req` when its path is a REST route's (a known path with another HTTP method is
   * `method_not_allowed`); undefined when no route has the path. Not async itself, so a REST call
   * costs no promise beyond its route's.
   */
  function serve(
    req: NodeRequest,
    res: NodeResponse,
    url: URL,
    requestId: string,
    access: AccessRecord,
  ): Promise<void> | undefined {
    let pathMatched = false;
    for (const route of restRoutes) {
      const params = route.match(url.pathname);
      if (params === null) continue;
      pathMatched = true;
      access.protocol = "rest";
      access.route = route.template;
      if (route.httpMethod !== req.method) continue;
      return serveRoute(route, params, url, req, res, requestId, access);
    }
    if (!pathMatched) return undefined;
    sendError(res, "method_not_allowed", `${req.method} is not allowed here`);
    return ANSWERED;
  }

  async function serveRoute(
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
      const type = String(req.headers["content-type"] ?? "")
        .split(";")[0]!
        .trim()
        .toLowerCase();
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
        if (typeof body !== "object" || body === null || Array.isArray(body))
          malformed = new Error("the body is not a JSON object");
        else message = body as Record<string, JsonValue>;
      } else if (malformed === null) {
        message[route.body] = body as JsonValue;
      }
    }
    for (const [key, value] of url.searchParams) {
      if (route.body !== "*") message[key] = queryParamValue(route.method.input, key, value);
    }
    Object.assign(message, params);
    const result = await invoke(
      route.method,
      () => {
        if (malformed !== null) throw malformed;
        return fromJson(route.method.input, message, jsonOptions);
      },
      req,
      requestId,
      access,
    );
    writeHead(res, result.status, {
      "content-type": "application/json",
      "cache-control": "no-store",
      ...result.headers,
    });
    res.end(result.json);
  }

  /**
   * A REST call: the JSON message decoded with the proto's rules, the method's implementation
   * run through the interceptors, the answer encoded as JSON, or the error as the REST error body.
   */
  async function invoke(
    method: DescMethod,
    decode: () => Message,
    req: NodeRequest,
    requestId: string,
    access: AccessRecord,
  ): Promise<{ status: number; json: string; headers?: Record<string, string> }> {
    const spec = options.implementations.get(`${method.parent.typeName}/${method.name}`);
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
        contextValues: options.contextValues(req, requestId, access),
      });
      const input = decodeOrMark(method.input, context, decode);
      const output = await invokeUnaryImplementation(spec, context, input, options.interceptors);
      return { status: 200, json: toJsonString(method.output, output, jsonOptions) };
    } catch (e) {
      return restErrorOf(e);
    } finally {
      req.off("close", onClose);
    }
  }

  return {
    serve,
    /** The REST routes, as "METHOD /template". */
    routes: restRoutes.map((r) => `${r.httpMethod} ${r.template}`),
  };
}

/**
 * The REST answer of a failed call. The error interceptor (errors.ts) keeps the domain error as
 * the ConnectError's cause, so its code, message and public detail are taken from it directly;
 * an error connect-es raised itself has only its Connect code (`invalid_request` for a bad argument).
 */
function restErrorOf(e: unknown): { status: number; json: string; headers?: Record<string, string> } {
  const error = ConnectError.from(e);
  const domain = error.cause instanceof DomainError ? error.cause : undefined;
  if (domain === undefined) {
    const code = error.code === Code.InvalidArgument ? "invalid_request" : statusName(error.code);
    return {
      status: httpStatusOf(error.code),
      json: JSON.stringify({ code, message: error.rawMessage, status: statusName(error.code) }),
    };
  }
  const connectCode = ERROR_TABLE[domain.code].code;
  const retryAfter = retryAfterSeconds(domain);
  const detail = domain.detail ?? {};
  return {
    status: httpStatusOf(connectCode),
    ...(retryAfter === undefined ? {} : { headers: { "retry-after": String(retryAfter) } }),
    json: JSON.stringify({
      code: domain.code,
      message: domain.message,
      status: statusName(connectCode),
      ...(Object.keys(detail).length > 0 ? { details: detail } : {}),
    }),
  };
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
