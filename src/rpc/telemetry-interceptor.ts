import {
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type Tracer,
} from "@opentelemetry/api";
import { ConnectError, type Interceptor } from "@connectrpc/connect";
import type { DescMethod } from "@bufbuild/protobuf";
import { isDomainError } from "../core/errors.ts";
import { statusName } from "./error-codes.ts";
import { kAccess } from "./context.ts";

/** Where the telemetry interceptor reports each finished RPC (the metrics adapter). */
export interface RpcObserver {
  rpc(method: string, protocol: string, code: string, seconds: number): void;
}

/** `identity.v1.AuthService/SigninWithIdToken`, built once per method. */
const methodNames = new WeakMap<DescMethod, string>();
function methodName(method: DescMethod): string {
  let name = methodNames.get(method);
  if (name === undefined) {
    name = `${method.parent.typeName}/${method.name}`;
    methodNames.set(method, name);
  }
  return name;
}

/**
 * Outermost interceptor, every protocol: times the call, reports it with its stable outcome
 * code, and writes the code into the request's access record (one access-log line per request,
 * written by the HTTP handler).
 */
export function telemetryInterceptor(observer: RpcObserver): Interceptor {
  return (next) => async (req) => {
    const started = performance.now();
    const access = req.contextValues.get(kAccess);
    let code = "ok";
    try {
      return await next(req);
    } catch (e) {
      code = outcomeOf(e);
      throw e;
    } finally {
      if (access !== null) access.code = code;
      observer.rpc(methodName(req.method), access?.protocol ?? "unknown", code, (performance.now() - started) / 1000);
    }
  };
}

const headerGetter: TextMapGetter<Headers> = {
  keys: (h) => [...h.keys()],
  get: (h, key) => h.get(key) ?? undefined,
};

/**
 * A SERVER span per RPC, child of the caller's `traceparent` when it sent one; everything the
 * call does (verification, key fetches, database) nests under it. Installed only when tracing is
 * on: with tracing off there is no interceptor, so no span or context work at all.
 */
export function tracingInterceptor(tracer: Tracer): Interceptor {
  return (next) => (req) => {
    const parent = propagation.extract(ROOT_CONTEXT, req.header, headerGetter);
    const access = req.contextValues.get(kAccess);
    return tracer.startActiveSpan(
      methodName(req.method),
      {
        kind: SpanKind.SERVER,
        attributes: {
          "rpc.system": "connect_rpc",
          "rpc.service": req.service.typeName,
          "rpc.method": req.method.name,
          ...(access === null ? {} : { "identity.protocol": access.protocol }),
        },
      },
      parent,
      async (span) => {
        try {
          return await next(req);
        } catch (e) {
          span.setStatus({ code: SpanStatusCode.ERROR, message: outcomeOf(e) });
          throw e;
        } finally {
          span.end();
        }
      },
    );
  };
}

/** The stable code of a failure: the domain error's (the error interceptor keeps it as the cause), else the Connect code. */
function outcomeOf(e: unknown): string {
  if (isDomainError(e)) return e.code;
  if (e instanceof ConnectError) return isDomainError(e.cause) ? e.cause.code : statusName(e.code);
  return "internal";
}
