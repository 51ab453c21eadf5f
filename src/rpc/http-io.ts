import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { ErrorCode } from "../core/errors.ts";
import { ERROR_TABLE, httpStatusOf, statusName } from "./error-codes.ts";

/** Reading JSON bodies and writing JSON answers, for HTTP/1.1 and HTTP/2 requests alike. */

export type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

/** A request refused at the HTTP layer, before any RPC ran (too large, not JSON). */
export class BodyError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** The request body as text, at most `limit` bytes. */
export async function readTextBody(req: NodeRequest, limit: number): Promise<string> {
  const declared = Number(req.headers["content-length"] ?? "0");
  if (declared > limit) throw new BodyError("request_too_large", `the request body exceeds ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new BodyError("request_too_large", `the request body exceeds ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** The request body as JSON (an empty body is `{}`), at most `limit` bytes. */
export async function readJsonBody(req: NodeRequest, limit: number): Promise<unknown> {
  const text = await readTextBody(req, limit);
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new BodyError("invalid_request", "the request body is not valid JSON");
  }
}

/** A JSON answer, never cached. */
export function sendJson(res: NodeResponse, status: number, json: unknown, headers?: Record<string, string>): void {
  const body = JSON.stringify(json);
  writeHead(res, status, { "content-type": "application/json", "cache-control": "no-store", ...headers });
  res.end(body);
}

/** A refusal at the HTTP layer, in the REST error body (`code`, `message`, `status`). */
export function sendError(res: NodeResponse, code: ErrorCode, message: string): void {
  const entry = ERROR_TABLE[code];
  sendJson(res, entry.http ?? httpStatusOf(entry.code), { code, message, status: statusName(entry.code) });
}

/** writeHead for either response type (their overloads do not unify). */
export function writeHead(res: NodeResponse, status: number, headers: Record<string, string>): void {
  (res as http.ServerResponse).writeHead(status, headers);
}
