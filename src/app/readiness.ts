import type { Logger } from "../logger.ts";
import { createReadiness, type Readiness } from "../rpc/readiness.ts";
import { type Database, sqlitePath } from "../store/database.ts";
import { createReadinessProbe, type ReadinessProbe } from "../store/readiness.ts";

/**
 * Readiness, assembled: the database accepts writes (store/readiness.ts) and the process is not
 * draining (rpc/readiness.ts, which /readyz and gRPC health share), and in a cluster every other
 * worker is ready too. `notReadyReason` is the last failed probe's reason, what /readyz names.
 */
export function createAppReadiness(deps: {
  database: Database;
  databaseUrl: string;
  logger: Logger;
  pollIntervalMs: number;
  /** A worker of several: ready only while every other serving worker is too (app/cluster.ts). */
  cluster?: { othersReady(): Promise<string | undefined> } | undefined;
}): { probe: ReadinessProbe; readiness: Readiness; notReadyReason: () => string } {
  const probe = createReadinessProbe({
    database: deps.database,
    isDraining: () => false,
    sqliteFile: deps.databaseUrl.startsWith("file:") ? sqlitePath(deps.databaseUrl) : undefined,
    onProbeFailure: (e) => deps.logger.warn("readiness probe failed", { cause: String(e) }),
  });
  let notReadyReason = "database_error";
  const readiness = createReadiness({
    ping: async () => {
      const r = await probe.check();
      if (!r.ready) {
        notReadyReason = r.reason;
        throw new Error(r.reason);
      }
      const others = await deps.cluster?.othersReady().catch((e: unknown) => `cluster_unreachable: ${String(e)}`);
      if (others !== undefined) {
        notReadyReason = others;
        throw new Error(others);
      }
    },
    pollIntervalMs: deps.pollIntervalMs,
  });
  return { probe, readiness, notReadyReason: () => notReadyReason };
}
