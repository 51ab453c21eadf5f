import type * as http from "node:http";
import { listenOptions, upkeepSettings } from "../config/to-options.ts";
import type { createHttpHandler } from "../rpc/http-handler.ts";
import type { Readiness } from "../rpc/readiness.ts";
import { type RunningServer, startServer } from "../rpc/server.ts";
import { closeMetricsServer, metricsServerUrl, startMetricsServer } from "../telemetry/metrics-server.ts";
import type { Tracing } from "../telemetry/tracing.ts";
import type { ServiceParts } from "./parts.ts";
import { createRefusalFlusher, startUpkeep } from "./upkeep.ts";

export interface LifecycleDeps {
  parts: ServiceParts;
  listener: ReturnType<typeof createHttpHandler>;
  readiness: Readiness;
  /** What the metrics port serves (when `server.metrics_port` is set). */
  servedMetrics: { render(): Promise<string>; contentType: string };
  tracing: Tracing | undefined;
  /** A worker of several (app/cluster.ts). */
  worker: boolean;
}

/**
 * The app's running life: listening (the upkeep jobs, the server, the metrics port), draining
 * and closing, each part stopped in the order that loses nothing.
 */
export function createLifecycle(deps: LifecycleDeps) {
  const { parts, readiness } = deps;
  const { config, stores } = parts;
  const { addressLimit, logger } = parts;
  const flushRefusals = createRefusalFlusher({ addressLimit, audit: stores.audit, logger });
  let server: RunningServer | undefined;
  let metricsServer: http.Server | undefined;
  let stopUpkeep: (() => void) | undefined;
  const running = () => {
    if (server === undefined) throw new Error("not listening");
    return server;
  };
  return {
    url: () => running().url,
    metricsUrl: () =>
      metricsServer === undefined ? running().url : metricsServerUrl(metricsServer, config.server.host),
    async listen(): Promise<RunningServer> {
      stopUpkeep = startUpkeep({
        ...upkeepSettings(config),
        keyRing: parts.keyRing,
        purgers: {
          challenges: {
            // MFA challenges and the passkey ceremonies opened for them (or for registrations).
            purgeExpiredChallenges: async (before) =>
              (await stores.mfa.purgeExpiredChallenges(before)) +
              (await stores.passkeys.purgeExpiredCeremonies(before)),
          },
          sessions: stores.sessions,
          trustedDevices: stores.trustedDevices,
          audit: stores.audit,
        },
        clock: parts.clock,
        logger,
        flushRefusals,
      });
      const { listener } = deps;
      const { connectionKey } = listener;
      server = await startServer({ ...listenOptions(config, deps.worker), listener, connectionKey });
      parts.urls.listening(server.url);
      if (config.server.metrics_port !== undefined) {
        metricsServer = await startMetricsServer(config.server.host, config.server.metrics_port, deps.servedMetrics);
      }
      return server;
    },
    drain() {
      readiness.drain();
    },
    async close(options?: { hurry?: AbortSignal }): Promise<void> {
      readiness.drain();
      // Open health watches end now; the server would otherwise wait for them until its timeout.
      readiness.close();
      stopUpkeep?.();
      await server?.close(config.server.shutdown_timeout_ms, options?.hurry);
      await flushRefusals();
      if (metricsServer !== undefined) await closeMetricsServer(metricsServer);
      await parts.database.close();
      await deps.tracing?.shutdown();
    },
  };
}
