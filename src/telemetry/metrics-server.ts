import * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { ServiceMetrics } from "./metrics.ts";

/** GET /metrics alone, on a port of its own (server.metrics_port), for scrapers on a private network. */
export async function startMetricsServer(
  host: string,
  port: number,
  metrics: Pick<ServiceMetrics, "render" | "contentType">,
): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "/").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    metrics.render().then(
      (text) => res.writeHead(200, { "content-type": metrics.contentType }).end(text),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

/** The URL of a metrics server started on `host`. */
export function metricsServerUrl(server: http.Server, host: string): string {
  const { port } = server.address() as AddressInfo;
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** Stops a metrics server, its open connections included. */
export async function closeMetricsServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}
