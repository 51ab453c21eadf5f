import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { DomainError, isDomainError } from "../core/errors.ts";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { ErrorInfoSchema, RetryInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";
import type { Logger } from "../logger.ts";
import { ERROR_TABLE } from "./error-codes.ts";
import { kRequestId } from "./context.ts";

const ERROR_DOMAIN = "identity.v1";

/** Turns any error into the DomainError the client may see; unknown ones become `internal`. */
function toDomainError(e: unknown): DomainError {
  if (isDomainError(e)) return e;
  return new DomainError("internal", "internal error", { cause: e });
}

/**
 * A ConnectError carrying the stable code as a google.rpc.ErrorInfo detail (reason = code), and
 * the domain error itself as its cause (REST answers are made from it; no client sees the cause).
 * A refusal that says when to come back (`retry_after_seconds`) also carries google.rpc.RetryInfo
 * and the HTTP `Retry-After` header (Connect and REST answers; gRPC puts it in the trailers).
 */
function toConnectError(e: DomainError): ConnectError {
  const entry = ERROR_TABLE[e.code];
  const details: ConstructorParameters<typeof ConnectError>[3] = [
    {
      desc: ErrorInfoSchema,
      value: create(ErrorInfoSchema, { reason: e.code, domain: ERROR_DOMAIN, metadata: { ...e.detail } }),
    },
  ];
  const retryAfter = retryAfterSeconds(e);
  if (retryAfter === undefined) return new ConnectError(e.message, entry.code, undefined, details, e);
  details.push({
    desc: RetryInfoSchema,
    value: create(RetryInfoSchema, { retryDelay: durationFromMs(retryAfter * 1000) }),
  });
  return new ConnectError(e.message, entry.code, { "retry-after": String(retryAfter) }, details, e);
}

/** When a refusal says to come back (its `retry_after_seconds` detail), in whole seconds. */
export function retryAfterSeconds(e: DomainError): number | undefined {
  const n = Number(e.detail?.["retry_after_seconds"]);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/**
 * Every failure leaves as a ConnectError with a stable code; the client gets only the public
 * message (connect-es does not log handler errors itself). The request's access-log line
 * carries the code of every refusal; failures whose level is warn or error (unexpected ones,
 * provider and database trouble) get a line of their own with the cause.
 */
export function errorInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (e) {
      if (
        e instanceof ConnectError &&
        !(e.cause instanceof DomainError) &&
        e.code !== Code.Unknown &&
        e.code !== Code.Internal
      ) {
        throw e; // Protocol-level errors raised by connect itself (bad framing, size limits).
      }
      const domain = toDomainError(e instanceof ConnectError && e.cause !== undefined ? e.cause : e);
      const level = ERROR_TABLE[domain.code].log;
      if (level === "error" || level === "warn") {
        logger[level]("rpc failed", {
          method: req.method.name,
          code: domain.code,
          request_id: req.contextValues.get(kRequestId),
          cause: describeCause(domain.cause),
        });
      }
      throw toConnectError(domain);
    }
  };
}

/** Error chain as text for logs: names and messages, never request data. */
export function describeCause(cause: unknown): string | undefined {
  const parts: string[] = [];
  let c: unknown = cause;
  for (let depth = 0; c !== undefined && c !== null && depth < 5; depth++) {
    if (c instanceof Error) {
      parts.push(`${c.name}: ${c.message}`);
      c = c.cause;
    } else {
      parts.push(String(c));
      break;
    }
  }
  return parts.length > 0 ? parts.join(" <- ") : undefined;
}
