/**
 * The SQLite WAL checkpointer, run in a worker thread (see database.ts). The request path's
 * connection never checkpoints (wal_autocheckpoint = 0): a checkpoint copies the WAL back into
 * the database file and fsyncs both, which on the event loop would stall every request for
 * milliseconds. This thread does it on its own connection instead, PASSIVE (it never waits for or
 * blocks a writer), whenever the WAL has grown, so the WAL stays bounded and restarts from the top.
 */
import { parentPort, workerData } from "node:worker_threads";
import Sqlite from "better-sqlite3";

const { path, intervalMs } = workerData as { path: string; intervalMs: number };
const db = new Sqlite(path, { timeout: 0 });
db.pragma("synchronous = NORMAL");

const timer = setInterval(() => {
  try {
    db.pragma("wal_checkpoint(PASSIVE)");
  } catch {
    // SQLITE_BUSY and the like: the next tick tries again.
  }
}, intervalMs);

parentPort?.on("message", (message: unknown) => {
  if (message !== "close") return;
  clearInterval(timer);
  try {
    db.pragma("wal_checkpoint(PASSIVE)");
  } finally {
    db.close();
    parentPort?.close();
  }
});
