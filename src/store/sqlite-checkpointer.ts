/**
 * The SQLite WAL checkpointer, run in a worker thread (see database.ts). The request path's
 * connection never checkpoints (wal_autocheckpoint = 0): a checkpoint copies the WAL back into
 * the database file and fsyncs both, which on the event loop would stall every request for
 * milliseconds. This thread does it on its own connection instead.
 *
 * Every `intervalMs` (and whenever the WAL file has passed half its bound) it runs a PASSIVE
 * checkpoint, which never waits for or blocks a writer. Under sustained writes that alone never
 * lets the WAL start again from its top (see sqlite-wal-gate.ts), so once the WAL holds half of
 * `walMaxBytes` it copies the remainder with the hot path's writes held (milliseconds: only what
 * was committed since the pass before) and restarts the WAL with a write of its own, which also
 * truncates the file (`journal_size_limit`). Should that not happen (writes that do not pass the
 * gate: the `prisma` hot path, another process), a blocking RESTART checkpoint at three quarters
 * of the bound makes writers wait for it in their busy handlers instead.
 *
 * It looks every 10 ms while the hot path writes; after a second without a write transaction it
 * sleeps until the next one (the gate counts them), looking once a second meanwhile for writes
 * that do not pass the hot path.
 */
import { statSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import Sqlite from "better-sqlite3";
import {
  holdRequested,
  sleepUntilWrite,
  wakeCheckpointer,
  type WalGate,
  withWritesHeld,
  writesSoFar,
} from "./sqlite-wal-gate.ts";

const { path, intervalMs, walMaxBytes, gate } = workerData as {
  path: string;
  intervalMs: number;
  walMaxBytes: number;
  gate: WalGate;
};
/** How often the WAL file's size is looked at (one stat) while the hot path writes. */
const POLL_MS = Math.min(intervalMs, 10);
/** After this long without a write transaction of the hot path, sleep until the next one ... */
const QUIET_MS = 1000;
/** ... or this long (writes that do not pass the hot path: Prisma's, the admin tool's). */
const QUIET_LOOK_MS = 1000;
/** How long to wait for the hot path to say it holds its writes (it does at its next write). */
const ACK_WAIT_MS = 20;
/** How long the blocking RESTART fallback waits for the writer and readers. */
const RESTART_BUSY_MS = 1000;

const db = new Sqlite(path, { timeout: 0 });
db.pragma("synchronous = NORMAL");
// The connection that restarts the WAL truncates it to this at that commit (see restart()).
db.pragma(`journal_size_limit = ${Math.floor(walMaxBytes / 4)}`);
const frameBytes = (db.pragma("page_size", { simple: true }) as number) + 24;
const restartAt = Math.floor(walMaxBytes / 2);
const forceAt = Math.floor((walMaxBytes * 3) / 4);
const walFile = `${path}-wal`;

/** One checkpoint; what the WAL holds after it (frames in it, frames copied), or null if it failed. */
function checkpoint(mode: "PASSIVE" | "RESTART"): { log: number; checkpointed: number } | null {
  try {
    const [row] = db.pragma(`wal_checkpoint(${mode})`) as { busy: number; log: number; checkpointed: number }[];
    return row === undefined ? null : { log: row.log, checkpointed: row.checkpointed };
  } catch {
    // SQLITE_BUSY and the like: the next tick tries again.
    return null;
  }
}

/**
 * Restarts the WAL now, with the hot path's writes held, rather than at the hot path's next
 * commit: the first write of a restarted WAL writes its header and fsyncs it (SQLite's rule under
 * synchronous = NORMAL), which on the event loop would stall every request. The write is the
 * smallest there is: user_version set to its own value (page 1, one frame).
 */
function restart(): boolean {
  try {
    db.exec("BEGIN IMMEDIATE");
  } catch {
    return false; // a transaction of the event loop's connection is open: its next write restarts it
  }
  try {
    db.pragma(`user_version = ${db.pragma("user_version", { simple: true }) as number}`);
    db.exec("COMMIT");
    return true;
  } catch {
    if (db.inTransaction) db.exec("ROLLBACK");
    return false;
  }
}

function walFileBytes(): number {
  try {
    return statSync(walFile).size;
  } catch {
    return 0;
  }
}

let last = 0;
/** The WAL's frames after the last pass with writes held (-1: none since). */
let heldLog = -1;
function tick(): void {
  const now = Date.now();
  // The file never holds fewer bytes than the WAL's frames, so a small file needs no look inside.
  if (walFileBytes() < restartAt && now - last < intervalMs) return;
  last = now;
  let state = checkpoint("PASSIVE");
  // A checkpoint that copied all it saw still says little: it copies what was committed when it
  // began, and the writes meanwhile are in the WAL after that. Only with writes held does a pass
  // catch up. Nothing written since the last held pass (idle): nothing to do either, unless the
  // event loop's guard asks for a hold (the WAL file near its bound: see database.ts).
  if (state === null || state.log * frameBytes < restartAt) return;
  if (state.log === heldLog && state.checkpointed >= state.log && !holdRequested(gate)) return;
  state = withWritesHeld(gate, ACK_WAIT_MS, () => {
    const held = checkpoint("PASSIVE");
    return held !== null && held.checkpointed >= held.log && restart() ? { log: 0, checkpointed: 0 } : held;
  });
  heldLog = state?.log ?? -1;
  // Still this large: writes went on without passing the gate (or the gate's wait ran out).
  if (state === null || state.log * frameBytes < forceAt) return;
  db.pragma(`busy_timeout = ${RESTART_BUSY_MS}`);
  checkpoint("RESTART");
  db.pragma("busy_timeout = 0");
}

let closing = false;

async function run(): Promise<void> {
  let seen = writesSoFar(gate);
  let lastWrite = Date.now();
  while (!closing) {
    tick();
    const writes = writesSoFar(gate);
    if (writes !== seen) {
      seen = writes;
      lastWrite = Date.now();
    }
    if (Date.now() - lastWrite >= QUIET_MS) await sleepUntilWrite(gate, seen, QUIET_LOOK_MS);
    else await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
void run();

parentPort?.on("message", (message: unknown) => {
  if (message !== "close") return;
  closing = true;
  wakeCheckpointer(gate);
  try {
    db.pragma("wal_checkpoint(PASSIVE)");
  } finally {
    db.close();
    parentPort?.close();
  }
});
