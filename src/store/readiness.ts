/**
 * Readiness: whether this replica can serve sign-ins now, which means the database accepts
 * writes (a sign-in always writes). A `SELECT 1` is not enough: a read-only or full database
 * answers it while every sign-in fails. So the probe commits a real write, a one-row heartbeat,
 * and on SQLite also checks that the database can still grow (a full disk or `max_page_count`
 * fails only the writes that need a new page, which the heartbeat's in-place update never does).
 *
 * The write is cheap but not free, so however often /readyz (or gRPC health) is asked, a replica
 * writes at most once per `minIntervalMs`; in between a check is a `SELECT 1` (so an outage shows
 * at once) on top of the last write's result (so a refused write stands until the next one).
 */
import { statfs } from "node:fs/promises";
import { dirname } from "node:path";
import type { Database } from "./database.ts";
import { isUnavailable, storageFault, type StorageFault } from "./prisma-errors.ts";

/** Why a replica is not ready: stable codes for probes and dashboards, never internals. */
export type NotReadyReason = "draining" | "database_unreachable" | "database_error" | StorageFault;

export type Readiness = { ready: true } | { ready: false; reason: NotReadyReason };

export interface ReadinessProbe {
  /** The current answer: draining first, else whether the database takes writes (see above). */
  check(): Promise<Readiness>;
}

/** Pages SQLite must still be able to add (~a few sign-ins' rows and index splits). */
const MIN_FREE_PAGES = 16;
/** Free bytes the filesystem under a SQLite database must keep (WAL growth, checkpoints). */
const MIN_FREE_BYTES = 8 * 1024 * 1024;
const HEARTBEAT_ID = "readiness";

export interface ReadinessDeps {
  database: Database;
  /** True while the server drains: not ready, without asking the database. */
  isDraining: () => boolean;
  /** Write the heartbeat at most this often. */
  minIntervalMs?: number;
  /** SQLite's database file, for the filesystem's free space (absent: not checked). */
  sqliteFile?: string | undefined;
  now?: () => number;
  /** Sees the error behind a failed probe (for the log; the answer carries only the reason). */
  onProbeFailure?: (e: unknown) => void;
}

export function createReadinessProbe(deps: ReadinessDeps): ReadinessProbe {
  const minIntervalMs = deps.minIntervalMs ?? 1000;
  const now = deps.now ?? Date.now;
  let lastWrite: { at: number; result: Readiness } | undefined;
  let inFlight: Promise<Readiness> | undefined;

  function notReady(e: unknown): Readiness {
    deps.onProbeFailure?.(e);
    const fault = storageFault(e);
    if (fault !== null) return { ready: false, reason: fault };
    return { ready: false, reason: isUnavailable(e) ? "database_unreachable" : "database_error" };
  }

  async function probeWrite(): Promise<Readiness> {
    const { database } = deps;
    try {
      const at = new Date();
      await database.client.heartbeat.upsert({
        where: { id: HEARTBEAT_ID },
        create: { id: HEARTBEAT_ID, at },
        update: { at },
        select: { id: true },
      });
      if (database.driver.dialect === "sqlite" && !(await sqliteCanGrow(database.driver.db, deps.sqliteFile))) {
        return { ready: false, reason: "database_full" };
      }
      return { ready: true };
    } catch (e) {
      return notReady(e);
    }
  }

  return {
    async check() {
      if (deps.isDraining()) return { ready: false, reason: "draining" };
      if (lastWrite === undefined || now() - lastWrite.at >= minIntervalMs) {
        inFlight ??= probeWrite().then((result) => {
          lastWrite = { at: now(), result };
          inFlight = undefined;
          return result;
        });
        return inFlight;
      }
      if (!lastWrite.result.ready) return lastWrite.result;
      // Between writes, a plain round trip: an outage shows at once, not a second late.
      try {
        await deps.database.ping();
        return { ready: true };
      } catch (e) {
        return notReady(e);
      }
    },
  };
}

/** Room for more pages under `max_page_count`, and free space on the file's filesystem. */
async function sqliteCanGrow(
  db: Extract<Database["driver"], { dialect: "sqlite" }>["db"],
  file: string | undefined,
): Promise<boolean> {
  const pragma = (name: string) => Number(db.pragma(name, { simple: true }));
  const free = pragma("max_page_count") - pragma("page_count") + pragma("freelist_count");
  if (free < MIN_FREE_PAGES) return false;
  if (file === undefined) return true;
  const fs = await statfs(dirname(file));
  return fs.bavail * fs.bsize >= MIN_FREE_BYTES;
}
