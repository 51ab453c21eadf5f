import { type Attributes, SpanKind, SpanStatusCode, type Tracer } from "@opentelemetry/api";
import { isDomainError } from "../core/errors.ts";
import type { ServiceMetrics } from "./metrics.ts";

type AsyncMethod = (...args: never[]) => Promise<unknown>;

export interface InstrumentOptions {
  /** Each call's duration, by operation name (metrics). */
  observe?: ((operation: string, seconds: number) => void) | undefined;
  /** With a tracer (tracing on), each call also runs in a span named `${spanPrefix} ${operation}`. */
  tracer?: Tracer | undefined;
  spanPrefix: string;
  spanKind?: SpanKind;
  attributes?: Attributes;
}

/**
 * A copy of `target` whose named async methods are timed and, when tracing is on, traced: the
 * decorator a port gets in app.ts, so stores and verifiers stay free of telemetry. Without
 * `observe` and `tracer` the target itself is returned (nothing added to its calls). A span's
 * error status carries only the stable error code or the error's class name: messages of driver
 * errors can quote row values.
 */
export function instrumentMethods<T extends object>(
  target: T,
  operations: { [K in keyof T]?: T[K] extends AsyncMethod ? string : never },
  options: InstrumentOptions,
): T {
  const { observe, tracer } = options;
  if (observe === undefined && tracer === undefined) return target;
  const out = { ...target } as Record<string, unknown>;
  for (const [name, operation] of Object.entries(operations) as [string, string][]) {
    const fn = (target as Record<string, AsyncMethod>)[name]!.bind(target) as (...args: unknown[]) => Promise<unknown>;
    if (tracer === undefined) {
      out[name] = async (...args: unknown[]) => {
        const started = performance.now();
        try {
          return await fn(...args);
        } finally {
          observe!(operation, (performance.now() - started) / 1000);
        }
      };
      continue;
    }
    const spanName = `${options.spanPrefix} ${operation}`;
    const spanOptions = { kind: options.spanKind ?? SpanKind.INTERNAL, attributes: options.attributes ?? {} };
    out[name] = (...args: unknown[]) =>
      tracer.startActiveSpan(spanName, spanOptions, async (span) => {
        const started = performance.now();
        try {
          return await fn(...args);
        } catch (e) {
          span.setStatus({
            code: SpanStatusCode.ERROR,
            message: isDomainError(e) ? e.code : e instanceof Error ? e.name : "error",
          });
          throw e;
        } finally {
          observe?.(operation, (performance.now() - started) / 1000);
          span.end();
        }
      });
  }
  return out as T;
}

type HotPathOperation = "readSignin" | "commitSignin" | "failuresFromIp" | "refresh" | "findSession" | "findUser";

/**
 * The sign-in hot path's store (store/hot), each operation timed into the query histogram and,
 * with a tracer, traced as a client span of the database. Wrapped once at start-up: a call costs
 * one timer and, with tracing on, one span.
 */
export function instrumentHotPath<T extends Record<HotPathOperation, AsyncMethod>>(
  store: T,
  metrics: Pick<ServiceMetrics, "query">,
  tracer: Tracer | undefined,
  dialect: string,
): T {
  return instrumentMethods(
    store,
    {
      readSignin: "read_signin",
      commitSignin: "commit_signin",
      failuresFromIp: "failures_from_ip",
      refresh: "refresh",
      findSession: "find_session",
      findUser: "find_user",
    } as Parameters<typeof instrumentMethods<T>>[1],
    {
      observe: (operation, seconds) => metrics.query("hot", operation, seconds),
      tracer,
      spanPrefix: "db",
      spanKind: SpanKind.CLIENT,
      attributes: { "db.system.name": dialect },
    },
  );
}
