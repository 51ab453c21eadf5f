/**
 * Plain unary calls without connect-es's general machinery. connect-es serves every gRPC call,
 * unary ones too, through async-iterable pipelines, and wraps Connect calls in universal
 * request/response adapters; measured, that cost ~50% (gRPC) and ~25% (Connect) more CPU per
 * sign-in than the same call over REST. The plain cases are answered here instead:
 *
 * - gRPC over HTTP/2: `application/grpc[+proto]`, one uncompressed length-prefixed message, no
 *   deadline header;
 * - Connect unary POST: `application/json` or `application/proto`, no content encoding, no
 *   timeout header, protocol version 1 or none;
 *
 * the message decoded, the method's implementation run through the same interceptors, the answer
 * (or the error, in the protocol's own shape: gRPC status trailers, Connect error JSON) written.
 * Anything else (compression, deadlines, GET, gRPC-Web, other codecs) goes to connect-es, so
 * behaviour never depends on which path served a call; tests hold both paths to the same answers.
 */
import type * as http from "node:http";
import type * as http2 from "node:http2";
import {
  type DescMethod,
  fromBinary,
  fromJson,
  type JsonReadOptions,
  type JsonValue,
  type JsonWriteOptions,
  toBinary,
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
import { compressedFlag, invokeUnaryImplementation } from "@connectrpc/connect/protocol";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { decodeOrMark } from "./request-checks.ts";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

/** Whether `req` is a call this module serves (the rest goes to connect-es). */
export function isPlainGrpcUnary(
  req: http2.Http2ServerRequest,
  spec: MethodImplSpec | undefined,
): spec is MethodImplSpec & { kind: "unary" } {
  const type = req.headers["content-type"];
  const encoding = req.headers["grpc-encoding"];
  return (
    spec?.kind === "unary" &&
    req.method === "POST" &&
    (type === "application/grpc" || type === "application/grpc+proto") &&
    (encoding === undefined || encoding === "identity") &&
    req.headers["grpc-timeout"] === undefined
  );
}

export async function serveGrpcUnary(
  req: http2.Http2ServerRequest,
  res: http2.Http2ServerResponse,
  spec: MethodImplSpec & { kind: "unary" },
  options: { interceptors: Interceptor[]; readMaxBytes: number; contextValues: ContextValues },
): Promise<void> {
  const method: DescMethod = spec.method;
  const trailer = new Headers();
  let answer: Uint8Array | undefined;
  const call = startCall(req, res, method, "grpc", options.contextValues);
  try {
    const body = await readBody(req, options.readMaxBytes + 5);
    const input = decodeOrMark(method.input, call.context, () => fromBinary(method.input, unframe(body)));
    const output = await invokeUnaryImplementation(spec, call.context, input, options.interceptors);
    answer = toBinary(method.output, output);
    call.context.responseTrailer.forEach((value, name) => trailer.set(name, value));
    setTrailerStatus(trailer, undefined);
  } catch (e) {
    const error = ConnectError.from(e);
    error.metadata.forEach((value, name) => trailer.set(name, value));
    setTrailerStatus(trailer, error);
  } finally {
    call.done();
  }
  if (res.destroyed) return;
  res.writeHead(200, {
    ...headersOf(call.context.responseHeader),
    "content-type": "application/grpc+proto",
    "grpc-accept-encoding": "identity",
  });
  const trailers: Record<string, string> = {};
  trailer.forEach((value, name) => (trailers[name] = value));
  res.addTrailers(trailers);
  if (answer === undefined) {
    res.end();
    return;
  }
  // Framed by hand, not with connect-es's `encodeEnvelope`: that allocates a zero-filled array and a
  // DataView per call, and Node's stream wraps its Uint8Array in one more Buffer on `end`; this is
  // one Buffer from Node's pool, written as is (the sign-in hot path, ARCHITECTURE.md).
  const frame = Buffer.allocUnsafe(5 + answer.byteLength);
  frame[0] = 0;
  frame.writeUInt32BE(answer.byteLength, 1);
  frame.set(answer, 5);
  res.end(frame);
}

/**
 * The one message of a unary gRPC request body (length-prefixed framing), still compressed when its
 * flags say so and `compressed` allows it; anything else is a malformed request. Size limits are
 * checked as the body is read (resource_exhausted). By hand: connect-es's public API decodes
 * envelopes only from streams (`createEnvelopeReadableStream`, async iterables): a pipeline per
 * call, which the fast path exists to avoid.
 */
export function unframe(body: Uint8Array, compressed = false): Uint8Array {
  if (body.length < 5) throw new Error("missing message");
  if (body[0] !== 0 && !(compressed && body[0] === compressedFlag)) {
    throw new Error("unexpected envelope flags (compression without grpc-encoding?)");
  }
  const length = Buffer.from(body.buffer, body.byteOffset, body.byteLength).readUInt32BE(1);
  if (body.length !== 5 + length) throw new Error("expected exactly one message of the promised length");
  return body.subarray(5);
}

/** Whether `req` is a Connect unary call this module serves (the rest goes to connect-es). */
export function isPlainConnectUnary(
  req: NodeRequest,
  spec: MethodImplSpec | undefined,
): spec is MethodImplSpec & { kind: "unary" } {
  const type = connectCodecOf(req);
  const encoding = req.headers["content-encoding"];
  const version = req.headers["connect-protocol-version"];
  return (
    spec?.kind === "unary" &&
    req.method === "POST" &&
    type !== null &&
    (encoding === undefined || encoding === "identity") &&
    req.headers["connect-timeout-ms"] === undefined &&
    (version === undefined || version === "1")
  );
}

function connectCodecOf(req: NodeRequest): "json" | "proto" | null {
  const type = req.headers["content-type"]?.toLowerCase().replace(/\s+/g, "");
  if (type === "application/json" || type === "application/json;charset=utf-8") return "json";
  if (type === "application/proto") return "proto";
  return null;
}

export async function serveConnectUnary(
  req: NodeRequest,
  res: NodeResponse,
  spec: MethodImplSpec & { kind: "unary" },
  options: {
    interceptors: Interceptor[];
    readMaxBytes: number;
    contextValues: ContextValues;
    jsonOptions: Partial<JsonReadOptions & JsonWriteOptions>;
  },
): Promise<void> {
  const method: DescMethod = spec.method;
  const codec = connectCodecOf(req)!;
  const call = startCall(req, res, method, "connect", options.contextValues);
  let status = 200;
  let contentType = codec === "json" ? "application/json" : "application/proto";
  let body: Uint8Array | string;
  try {
    const bytes = await readBody(req, options.readMaxBytes);
    const input = decodeOrMark(method.input, call.context, () =>
      codec === "json"
        ? fromJson(method.input, JSON.parse(bytes.toString("utf8")) as JsonValue, options.jsonOptions)
        : fromBinary(method.input, bytes),
    );
    const output = await invokeUnaryImplementation(spec, call.context, input, options.interceptors);
    body =
      codec === "json" ? toJsonString(method.output, output, options.jsonOptions) : toBinary(method.output, output);
  } catch (e) {
    const error = ConnectError.from(e);
    status = codeToHttpStatus(error.code);
    contentType = "application/json";
    body = errorToJsonBytes(error, options.jsonOptions);
    error.metadata.forEach((value, name) => call.context.responseHeader.set(name, value));
  } finally {
    call.done();
  }
  if (res.destroyed) return;
  const headers = headersOf(call.context.responseHeader);
  // Connect unary carries trailers as `trailer-` prefixed headers.
  call.context.responseTrailer.forEach((value, name) => (headers[`trailer-${name}`] = value));
  (res as http.ServerResponse).writeHead(status, { ...headers, "content-type": contentType });
  res.end(body);
}

/** The handler context of one call, with an abort signal that fires only if the client goes away. */
function startCall(
  req: NodeRequest,
  res: NodeResponse,
  method: DescMethod,
  protocolName: string,
  contextValues: ContextValues,
) {
  const abort = new AbortController();
  // Aborted only if the client goes away before the answer (an abort per call costs a DOMException).
  const onClose = () => {
    if (!res.writableFinished) abort.abort();
  };
  req.once("close", onClose);
  const requestHeader = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith(":") || value === undefined) continue;
    requestHeader.set(name, Array.isArray(value) ? value.join(", ") : value);
  }
  const context = createHandlerContext({
    service: method.parent,
    method,
    protocolName,
    requestMethod: "POST",
    url: `http://localhost/${method.parent.typeName}/${method.name}`,
    requestHeader,
    requestSignal: abort.signal,
    contextValues,
  });
  return { context, done: () => req.off("close", onClose) };
}

function headersOf(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  headers.forEach((value, name) => (out[name] = value));
  return out;
}

async function readBody(req: NodeRequest, readMaxBytes: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"] ?? "0");
  if (declared > readMaxBytes) {
    throw new ConnectError(
      `message size ${declared} is larger than configured readMaxBytes ${readMaxBytes}`,
      Code.ResourceExhausted,
    );
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > readMaxBytes) {
      throw new ConnectError(
        `message size is larger than configured readMaxBytes ${readMaxBytes}`,
        Code.ResourceExhausted,
      );
    }
    chunks.push(chunk);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}
