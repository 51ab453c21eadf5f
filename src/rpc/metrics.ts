import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { isDomainError } from "../core/errors.ts";

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export interface Metrics {
  /** Counts every RPC (all four protocols) by method and outcome, and times it. */
  interceptor: Interceptor;
  /** Prometheus text exposition format (version 0.0.4). */
  render(): string;
}

/**
 * In-process RPC metrics for Prometheus: `identity_rpc_requests_total{method,code}` where code is
 * our stable error code (or `ok`), and `identity_rpc_duration_seconds{method}`. Per replica by
 * nature (Prometheus sums them); labels never carry request data.
 */
export function createMetrics(): Metrics {
  const counts = new Map<string, number>();
  const histograms = new Map<string, { buckets: number[]; sum: number; count: number }>();

  function observe(method: string, code: string, seconds: number): void {
    const key = `${method}\u0000${code}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    let h = histograms.get(method);
    if (h === undefined) {
      h = { buckets: BUCKETS.map(() => 0), sum: 0, count: 0 };
      histograms.set(method, h);
    }
    BUCKETS.forEach((b, i) => {
      if (seconds <= b) h.buckets[i]! += 1;
    });
    h.sum += seconds;
    h.count += 1;
  }

  return {
    interceptor: (next) => async (req) => {
      const started = performance.now();
      const method = `${req.service.typeName}/${req.method.name}`;
      try {
        const res = await next(req);
        observe(method, "ok", (performance.now() - started) / 1000);
        return res;
      } catch (e) {
        observe(method, outcomeOf(e), (performance.now() - started) / 1000);
        throw e;
      }
    },
    render() {
      const lines = [
        "# HELP identity_rpc_requests_total RPCs handled, by method and outcome (ok or stable error code).",
        "# TYPE identity_rpc_requests_total counter",
      ];
      for (const [key, n] of [...counts].sort()) {
        const [method, code] = key.split("\u0000");
        lines.push(`identity_rpc_requests_total{method="${method}",code="${code}"} ${n}`);
      }
      lines.push("# HELP identity_rpc_duration_seconds RPC handling time.", "# TYPE identity_rpc_duration_seconds histogram");
      for (const [method, h] of [...histograms].sort(([a], [b]) => a.localeCompare(b))) {
        BUCKETS.forEach((b, i) => lines.push(`identity_rpc_duration_seconds_bucket{method="${method}",le="${b}"} ${h.buckets[i]}`));
        lines.push(`identity_rpc_duration_seconds_bucket{method="${method}",le="+Inf"} ${h.count}`);
        lines.push(`identity_rpc_duration_seconds_sum{method="${method}"} ${h.sum}`);
        lines.push(`identity_rpc_duration_seconds_count{method="${method}"} ${h.count}`);
      }
      return `${lines.join("\n")}\n`;
    },
  };
}

/** The stable code of a failure: the ErrorInfo reason the error interceptor attached, else the Connect code. */
function outcomeOf(e: unknown): string {
  if (isDomainError(e)) return e.code;
  if (e instanceof ConnectError) {
    const reason = e.details.find((d) => "desc" in d && d.desc.typeName === "google.rpc.ErrorInfo");
    if (reason !== undefined && "value" in reason) return String((reason.value as { reason?: unknown }).reason ?? Code[e.code]);
    return Code[e.code] ?? "unknown";
  }
  return "internal";
}
