import { context, propagation, trace, type Tracer } from "@opentelemetry/api";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";

/** The instrumentation scope of every span this service makes. */
const TRACER_NAME = "idtoken-signin";

const SHUTDOWN_TIMEOUT_MS = 2000;

export interface TracingOptions {
  serviceName: string;
  /** OTLP/HTTP base URL (`/v1/traces` is appended), like OTEL_EXPORTER_OTLP_ENDPOINT; else the exporter's own default. */
  otlpEndpoint?: string | undefined;
  /** Fraction of new traces recorded; a caller's `traceparent` decides for its own trace. */
  sampleRatio: number;
  /** Instead of OTLP (tests: an InMemorySpanExporter), exported span by span. */
  exporter?: SpanExporter | undefined;
}

export interface Tracing {
  tracer: Tracer;
  /** Exports what is buffered and unregisters the provider. */
  shutdown(): Promise<void>;
}

/**
 * Starts OpenTelemetry tracing: a Node tracer provider (AsyncLocalStorage context, W3C
 * `traceparent` propagation), registered globally so spans nest across awaits, exporting over
 * OTLP/HTTP in batches. Only called when tracing is on; the SDK is loaded here, lazily, so a
 * service with tracing off never loads it and the API stays its no-op self.
 */
export async function startTracing(options: TracingOptions): Promise<Tracing> {
  const [
    { NodeTracerProvider, BatchSpanProcessor, SimpleSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler },
    { resourceFromAttributes },
  ] = await Promise.all([import("@opentelemetry/sdk-trace-node"), import("@opentelemetry/resources")]);
  let processor;
  if (options.exporter !== undefined) {
    processor = new SimpleSpanProcessor(options.exporter);
  } else {
    const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-http");
    const url = options.otlpEndpoint === undefined ? undefined : `${options.otlpEndpoint.replace(/\/$/, "")}/v1/traces`;
    processor = new BatchSpanProcessor(new OTLPTraceExporter(url === undefined ? {} : { url }));
  }
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": options.serviceName }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(options.sampleRatio) }),
    spanProcessors: [processor],
  });
  provider.register();
  return {
    tracer: provider.getTracer(TRACER_NAME),
    async shutdown() {
      // Exports what is buffered, but an unreachable collector must not hold up the exit.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        provider.shutdown().catch(() => undefined),
        new Promise((resolve) => (timer = setTimeout(resolve, SHUTDOWN_TIMEOUT_MS).unref())),
      ]);
      clearTimeout(timer);
      // So that a later app in the same process (tests) can register its own.
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}
