/**
 * Unary gRPC over HTTP/2 without the streaming machinery: connect-es serves every gRPC call,
 * unary ones too, through async-iterable pipelines, which measured ~50% more CPU per sign-in than
 * the same call over REST. The plain case (an uncompressed, length-prefixed protobuf message,
 * `application/grpc[+proto]`, no deadline header) is answered here: the message decoded, the
 * method's implementation run through the same interceptors, the answer and the status trailers
 * written to the HTTP/2 stream. Anything else (compression, deadlines, gRPC-Web, JSON codecs)
 * goes to connect-es, so behaviour never depends on which path served a call.
 */
import type * as http2 from "node:http2";
import { type DescMethod, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, createHandlerContext, type Interceptor, type MethodImplSpec } from "@connectrpc/connect";
import { invokeUnaryImplementation } from "@connectrpc/connect/protocol";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";

/** Whether `req` is a call this module serves (the rest goes to connect-es). */
export function isPlainGrpcUnary(req: http2.Http2ServerRequest, spec: MethodImplSpec | undefined): spec is MethodImplSpec & { kind: "unary" } {
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
  const abort = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) abort.abort();
  };
  req.once("close", onClose);
  try {
    const requestHeader = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (name.startsWith(":") || value === undefined) continue;
      requestHeader.set(name, Array.isArray(value) ? value.join(", ") : value);
    }
    const context = createHandlerContext({
      service: method.parent,
      method,
      protocolName: "grpc",
      requestMethod: "POST",
      url: `http://localhost/${method.parent.typeName}/${method.name}`,
      requestHeader,
      requestSignal: abort.signal,
      contextValues: options.contextValues,
    });
    const input = fromBinary(method.input, await readOneMessage(req, options.readMaxBytes));
    const output = await invokeUnaryImplementation(spec, context, input, options.interceptors);
    answer = toBinary(method.output, output);
    context.responseTrailer.forEach((value, name) => trailer.set(name, value));
    setTrailerStatus(trailer, undefined);
  } catch (e) {
    setTrailerStatus(trailer, ConnectError.from(e));
  } finally {
    req.off("close", onClose);
  }
  if (res.destroyed) return;
  res.writeHead(200, { "content-type": "application/grpc+proto", "grpc-accept-encoding": "identity" });
  const trailers: Record<string, string> = {};
  trailer.forEach((value, name) => (trailers[name] = value));
  res.addTrailers(trailers);
  if (answer === undefined) {
    res.end();
    return;
  }
  const frame = Buffer.allocUnsafe(5 + answer.byteLength);
  frame[0] = 0;
  frame.writeUInt32BE(answer.byteLength, 1);
  frame.set(answer, 5);
  res.end(frame);
}

/** The one uncompressed message of a unary request body (gRPC length-prefixed framing). */
async function readOneMessage(req: http2.Http2ServerRequest, readMaxBytes: number): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > readMaxBytes + 5) {
      throw new ConnectError(`message size is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted);
    }
    chunks.push(chunk);
  }
  const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  if (body.length < 5) throw new ConnectError("protocol error: missing message", Code.Unimplemented);
  if (body[0] !== 0) throw new ConnectError("protocol error: received a compressed message without grpc-encoding", Code.Internal);
  const length = body.readUInt32BE(1);
  if (length > readMaxBytes) {
    throw new ConnectError(`message size ${length} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted);
  }
  if (body.length !== 5 + length) throw new ConnectError("protocol error: expected exactly one message of the promised length", Code.InvalidArgument);
  return body.subarray(5);
}
