/**
 * connect-es decodes a request before any interceptor runs and answers a body it cannot decode
 * with 500 `internal` and the parser's own text ("parse binary: premature EOF"), uncounted by our
 * metrics. The calls it serves (gRPC with compression or a deadline, gRPC-Web, Connect with
 * compression or a timeout) are therefore decoded here first, with the same framing, compression
 * and codec rules. A body that decodes goes on to connect-es as it came; one that does not is
 * replaced by an empty message and the call is marked malformed, so that connect-es runs the
 * interceptors, which refuse it with `invalid_request` in the protocol's own shape, the same
 * answer the unary fast path and REST give.
 *
 * Not on the hot path: plain unary calls never come here (unary-fast-path.ts).
 */
import { fromBinary, fromJson, type JsonReadOptions, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, type MethodImplSpec } from "@connectrpc/connect";
import {
  type Compression,
  encodeEnvelope,
  envelopeDecompress,
  type UniversalServerRequest,
} from "@connectrpc/connect/protocol";
import { parseContentType as parseConnectType } from "@connectrpc/connect/protocol-connect";
import { parseContentType as parseGrpcType } from "@connectrpc/connect/protocol-grpc";
import { parseContentType as parseGrpcWebType } from "@connectrpc/connect/protocol-grpc-web";
import { universalRequestFromNodeRequest } from "@connectrpc/connect-node";
import type { NodeRequest, NodeResponse } from "./http-io.ts";
import { kMalformed, malformedRequest } from "./request-checks.ts";
import { unframe } from "./unary-fast-path.ts";

interface BodyShape {
  /** gRPC and gRPC-Web: length-prefixed envelopes; Connect unary: the bare message. */
  enveloped: boolean;
  json: boolean;
  /** The header naming the request's compression. */
  encodingHeader: "grpc-encoding" | "content-encoding";
}

function shapeOf(req: NodeRequest): BodyShape | null {
  if (req.method !== "POST") return null;
  const type = req.headers["content-type"] ?? null;
  const grpc = parseGrpcType(type);
  if (grpc !== undefined) return { enveloped: true, json: !grpc.binary, encodingHeader: "grpc-encoding" };
  const web = parseGrpcWebType(type);
  if (web !== undefined)
    return web.text ? null : { enveloped: true, json: !web.binary, encodingHeader: "grpc-encoding" };
  const connect = parseConnectType(type);
  if (connect !== undefined && !connect.stream)
    return { enveloped: false, json: !connect.binary, encodingHeader: "content-encoding" };
  return null; // connect-es answers what it does not serve (415, 405).
}

/**
 * The universal request to hand connect-es for `req`: its body already read and judged when it
 * is a unary call in a shape connect-es would decode.
 */
export async function screenedRequest(
  req: NodeRequest,
  res: NodeResponse,
  spec: MethodImplSpec | undefined,
  contextValues: ContextValues,
  options: { readMaxBytes: number; compressions: readonly Compression[]; jsonOptions: Partial<JsonReadOptions> },
): Promise<UniversalServerRequest> {
  const uReq = universalRequestFromNodeRequest(req, res, undefined, contextValues);
  const shape = shapeOf(req);
  if (spec?.kind !== "unary" || shape === null) return uReq;
  const encoding = headerOf(req, shape.encodingHeader) ?? "identity";
  const compression = encoding === "identity" ? null : options.compressions.find((c) => c.name === encoding);
  // Unknown encodings and bodies over the limit: connect-es's own answers (unimplemented, resource_exhausted).
  if (compression === undefined) return uReq;
  const limit = options.readMaxBytes + (shape.enveloped ? 5 : 0);
  if (Number(req.headers["content-length"] ?? "0") > limit) return uReq;
  const read = await readUpTo(req, limit);
  if (read.rest !== null) {
    // Over the limit, or the body broke off: connect-es reads on and answers as it always has
    // (resource_exhausted, or the aborted call).
    uReq.body = concatenated(read.chunks, read.rest);
    return uReq;
  }
  const body = Buffer.concat(read.chunks);
  const type = spec.method.input;
  try {
    const payload = await messageBytes(body, shape, compression, options.readMaxBytes);
    if (shape.json) fromJson(type, JSON.parse(Buffer.from(payload).toString("utf8")) as JsonValue, options.jsonOptions);
    else fromBinary(type, payload);
    uReq.body = once(body);
    return uReq;
  } catch (e) {
    if (e instanceof ConnectError && e.code === Code.ResourceExhausted) {
      uReq.body = once(body);
      return uReq;
    }
    contextValues.set(kMalformed, malformedRequest(type, e));
  }
  // An empty message in the same shape, uncompressed: connect-es decodes it, and the
  // interceptors refuse the call.
  const empty = Buffer.from(shape.json ? "{}" : "");
  uReq.body = once(shape.enveloped ? encodeEnvelope(0, empty) : empty);
  uReq.header.delete("content-encoding");
  return uReq;
}

/** The message bytes of a body: its one envelope (gRPC, gRPC-Web) or all of it, decompressed. */
async function messageBytes(
  body: Buffer,
  shape: BodyShape,
  compression: Compression | null,
  readMaxBytes: number,
): Promise<Uint8Array> {
  if (!shape.enveloped) return compression === null ? body : compression.decompress(body, readMaxBytes);
  const envelope = { flags: body[0]!, data: unframe(body, compression !== null) };
  return (await envelopeDecompress(envelope, compression, readMaxBytes)).data;
}

function headerOf(req: NodeRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Reads at most `limit` bytes. If there is more, the rest of the stream is left unread in `rest`;
 * if reading fails (the client went away), `rest` raises that failure.
 */
async function readUpTo(
  req: NodeRequest,
  limit: number,
): Promise<{ chunks: Buffer[]; rest: AsyncIterator<Buffer> | null }> {
  const it = (req as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let size = 0;
  for (;;) {
    let r: IteratorResult<Buffer>;
    try {
      r = await it.next();
    } catch (e) {
      return { chunks, rest: { next: () => Promise.reject(e) } };
    }
    if (r.done === true) return { chunks, rest: null };
    chunks.push(r.value);
    size += r.value.length;
    if (size > limit) return { chunks, rest: it };
  }
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

async function* concatenated(first: Buffer[], rest: AsyncIterator<Buffer>): AsyncIterable<Uint8Array> {
  yield* first;
  for (let r = await rest.next(); r.done !== true; r = await rest.next()) yield r.value;
}
