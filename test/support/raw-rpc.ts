/**
 * Raw RPC calls for tests that send what no well-behaved client would (broken protobuf, bad
 * framing, odd headers): gRPC and gRPC-Web over HTTP/2 with node:http2, Connect and REST with
 * fetch. Every call has a deadline, so a server that hangs fails the test instead of stalling it.
 */
import { connect, constants, type ClientHttp2Session } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { createEnvelopeReadableStream, encodeEnvelope } from "@connectrpc/connect/protocol";
import { errorFromJsonBytes } from "@connectrpc/connect/protocol-connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse } from "@connectrpc/connect/protocol-grpc-web";
import { ErrorInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";

/** An RPC's outcome in one shape for every protocol: HTTP status, Connect code, our stable code. */
export interface RpcOutcome {
  httpStatus: number;
  /** 0 = ok. */
  code: Code | 0;
  /** ErrorInfo reason (REST: the body's `code`), when the answer is an error. */
  reason: string | undefined;
  message: string;
}

/** A length-prefixed envelope (gRPC, gRPC-Web); flags 1 (`compressedFlag`) for a compressed message. */
export function envelope(data: Uint8Array, flags = 0): Uint8Array {
  return encodeEnvelope(flags, data);
}

export class RawRpc {
  private session: ClientHttp2Session | null = null;

  readonly url: string;
  readonly timeoutMs: number;

  constructor(url: string, timeoutMs = 5000) {
    this.url = url;
    this.timeoutMs = timeoutMs;
  }

  private h2(): ClientHttp2Session {
    if (this.session === null || this.session.closed || this.session.destroyed) {
      this.session = connect(this.url);
      this.session.on("error", () => undefined);
    }
    return this.session;
  }

  close(): void {
    this.session?.close();
  }

  /** One request over HTTP/2 (or HTTP/1.1 with fetch); resolves with status, headers, body and trailers. */
  async request(
    path: string,
    headers: Record<string, string>,
    body: Uint8Array,
    via: "h2" | "h1" = "h2",
  ): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer; trailers: Record<string, unknown> }> {
    if (via === "h2") return this.requestH2(path, headers, body);
    const res = await fetch(`${this.url}${path}`, {
      method: "POST",
      headers,
      body,
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    return {
      status: res.status,
      headers: Object.fromEntries(res.headers),
      body: Buffer.from(await res.arrayBuffer()),
      trailers: {},
    };
  }

  private requestH2(
    path: string,
    headers: Record<string, string>,
    body: Uint8Array,
  ): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer; trailers: Record<string, unknown> }> {
    return new Promise((resolve, reject) => {
      const stream = this.h2().request({
        [constants.HTTP2_HEADER_METHOD]: "POST",
        [constants.HTTP2_HEADER_PATH]: path,
        ...headers,
      });
      const timer = setTimeout(() => {
        stream.close(constants.NGHTTP2_CANCEL);
        reject(new Error(`no answer to ${path} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      let status = 0;
      let head: Record<string, unknown> = {};
      let trailers: Record<string, unknown> = {};
      const chunks: Buffer[] = [];
      stream.on("response", (h) => {
        status = Number(h[":status"]);
        head = h;
      });
      stream.on("trailers", (t) => (trailers = t));
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        clearTimeout(timer);
        resolve({ status, headers: head, body: Buffer.concat(chunks), trailers });
      });
      stream.on("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      stream.end(body);
    });
  }

  /** gRPC: `body` is sent as is (frame it with `envelope`). */
  async grpc(path: string, body: Uint8Array, headers: Record<string, string> = {}): Promise<RpcOutcome> {
    const r = await this.request(path, { "content-type": "application/grpc", te: "trailers", ...headers }, body);
    // Trailers-only answers carry the status in the headers.
    const fields = new Headers();
    for (const [k, v] of Object.entries({ ...r.headers, ...r.trailers }))
      if (!k.startsWith(":") && typeof v === "string") fields.set(k, v);
    return grpcOutcome(r.status, fields);
  }

  /** gRPC-Web: the status is in the trailer frame at the end of the body (or the headers). */
  async grpcWeb(
    path: string,
    body: Uint8Array,
    headers: Record<string, string> = {},
    via: "h2" | "h1" = "h2",
  ): Promise<RpcOutcome> {
    const r = await this.request(
      path,
      { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", ...headers },
      body,
      via,
    );
    const fields = new Headers();
    for (const [k, v] of Object.entries(r.headers)) if (!k.startsWith(":") && typeof v === "string") fields.set(k, v);
    try {
      for await (const { flags, data } of createEnvelopeReadableStream(new Blob([r.body]).stream())) {
        if ((flags & trailerFlag) === trailerFlag) trailerParse(data).forEach((v, k) => fields.set(k, v));
      }
    } catch {
      // A body that is not envelopes to its end (an HTTP error page): the headers read so far say it.
    }
    return grpcOutcome(r.status, fields);
  }

  /** Connect unary (`application/proto` unless headers say otherwise). */
  async connect(
    path: string,
    body: Uint8Array,
    headers: Record<string, string> = {},
    via: "h2" | "h1" = "h2",
  ): Promise<RpcOutcome> {
    const r = await this.request(path, { "content-type": "application/proto", ...headers }, body, via);
    if (r.status === 200) return { httpStatus: 200, code: 0, reason: undefined, message: "" };
    try {
      const error = errorFromJsonBytes(r.body, undefined, new ConnectError("not a Connect error body", Code.Unknown));
      return {
        httpStatus: r.status,
        code: error.code,
        reason: error.findDetails(ErrorInfoSchema)[0]?.reason,
        message: error.rawMessage,
      };
    } catch {
      // Not a Connect answer at all (415 for a content type nobody serves, a REST 404): the status says it.
      return { httpStatus: r.status, code: codeOfStatus(r.status), reason: undefined, message: "" };
    }
  }
}

function grpcOutcome(httpStatus: number, fields: Headers): RpcOutcome {
  const error = findTrailerError(fields);
  if (error === undefined) return { httpStatus, code: 0, reason: undefined, message: "" };
  return {
    httpStatus,
    code: error.code,
    reason: error.findDetails(ErrorInfoSchema)[0]?.reason,
    message: error.rawMessage,
  };
}

/** REST over fetch (HTTP/1.1). */
export async function restCall(
  url: string,
  method: string,
  path: string,
  body: string | undefined,
  headers: Record<string, string> = {},
  timeoutMs = 5000,
): Promise<RpcOutcome> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    ...(body === undefined ? {} : { body }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  if (res.ok) return { httpStatus: res.status, code: 0, reason: undefined, message: "" };
  const json = JSON.parse(text) as { code?: string; message?: string };
  return { httpStatus: res.status, code: codeOfStatus(res.status), reason: json.code, message: json.message ?? "" };
}

function codeOfStatus(status: number): Code {
  switch (status) {
    case 400:
    case 413:
    case 415:
      return Code.InvalidArgument;
    case 401:
      return Code.Unauthenticated;
    case 403:
      return Code.PermissionDenied;
    case 404:
      return Code.NotFound;
    case 405:
      return Code.Unimplemented;
    case 408:
      return Code.DeadlineExceeded;
    case 409:
      return Code.AlreadyExists;
    case 429:
      return Code.ResourceExhausted;
    case 503:
      return Code.Unavailable;
    default:
      return status >= 500 ? Code.Internal : Code.Unknown;
  }
}

/** `identity_rpc_requests_total` for one method and outcome, read from /metrics. */
export async function rpcCount(url: string, method: string, code: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0; // over the protocol label
  for (const line of text.split("\n")) {
    if (
      line.startsWith("identity_rpc_requests_total{") &&
      line.includes(`method="${method}"`) &&
      line.includes(`code="${code}"`)
    ) {
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return sum;
}
