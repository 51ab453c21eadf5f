/**
 * The write gate between the hot path's connection (the event loop) and the WAL checkpointer
 * (a worker thread, sqlite-checkpointer.ts): one Int32 in shared memory.
 *
 * Why: SQLite starts the WAL again from its first frame only when a writer begins while every
 * frame has been copied back into the database (and no reader holds an older snapshot). A PASSIVE
 * checkpoint in another thread never gets there while writes continue: each commit lands while it
 * copies, so the WAL grew without end under sustained load (15.8 GB after 5 minutes). When the WAL
 * passes its size, the checkpointer asks the hot path to hold its next write transaction for the
 * few milliseconds its last PASSIVE pass takes; the first write after it restarts the WAL.
 * Holding is asynchronous: reads, verification and answers go on meanwhile, and the held writes
 * commit together afterwards (group commit).
 *
 * The hot path also counts its write transactions here, so that the checkpointer can sleep while
 * there are none: looking every 10 ms (a wake-up of its thread and a stat each) cost an idle
 * service ~4 % of a core per process on a VM, where timer wake-ups are dear.
 */

/** Writes go ahead. */
const OPEN = 0;
/** The checkpointer asks writes to hold. */
const REQUESTED = 1;
/** The hot path has seen the request and holds its writes. */
const HELD = 2;

/** The gate's shared memory: handed to the worker in workerData and to the hot store. */
export type WalGate = Int32Array;

/** Its slots: the gate (OPEN, REQUESTED, HELD); the hot path's write transactions so far; 1 while the checkpointer sleeps. */
const STATE = 0;
const WRITES = 1;
const SLEEPING = 2;

export function createWalGate(): WalGate {
  return new Int32Array(new SharedArrayBuffer(3 * Int32Array.BYTES_PER_ELEMENT));
}

/**
 * The hot path's side, at each write transaction: counts it, and wakes the checkpointer if it
 * sleeps (two shared-memory operations; a notify only on the first write after a quiet spell).
 */
export function noteWrite(gate: WalGate): void {
  Atomics.add(gate, WRITES, 1);
  if (Atomics.load(gate, SLEEPING) === 1) Atomics.notify(gate, WRITES);
}

/** The hot path's write transactions so far (it wraps: compare for change only). */
export function writesSoFar(gate: WalGate): number {
  return Atomics.load(gate, WRITES);
}

/** Whether the checkpointer sleeps until the next write (sleepUntilWrite). */
export function checkpointerSleeps(gate: WalGate): boolean {
  return Atomics.load(gate, SLEEPING) === 1;
}

/**
 * The checkpointer's side when the WAL is quiet: waits, without blocking its thread's event loop,
 * until the hot path's next write transaction after `seen` (at once if there was one since), or
 * `maxMs` (writes that do not pass the hot path: Prisma's, another process's).
 */
export async function sleepUntilWrite(gate: WalGate, seen: number, maxMs: number): Promise<void> {
  // SLEEPING is set before the count is compared: a write that lands in between either changed
  // the count (no wait) or sees SLEEPING and notifies.
  Atomics.store(gate, SLEEPING, 1);
  try {
    const waiting = Atomics.waitAsync(gate, WRITES, seen, maxMs);
    if (waiting.async) await waiting.value;
  } finally {
    Atomics.store(gate, SLEEPING, 0);
  }
}

/** Ends a sleepUntilWrite at once (the checkpointer closing). */
export function wakeCheckpointer(gate: WalGate): void {
  Atomics.notify(gate, WRITES);
}

/**
 * The hot path's side, before each write transaction: null when writes may go ahead (one shared
 * memory read, the common case); otherwise a promise that settles when the checkpointer reopens
 * the gate, or after `maxWaitMs` whatever it does (a stuck or dead checkpointer delays writes,
 * never stops them).
 */
export function whenWritesOpen(gate: WalGate, maxWaitMs: number): Promise<void> | null {
  if (Atomics.load(gate, STATE) === OPEN) return null;
  return (async () => {
    const deadline = Date.now() + maxWaitMs;
    for (;;) {
      const left = deadline - Date.now();
      if (Atomics.load(gate, STATE) === OPEN || left <= 0) return;
      // Acknowledged on every turn: the gate may have opened and been asked for again meanwhile
      // (without it, waiting for HELD would return at once, again and again).
      if (Atomics.compareExchange(gate, STATE, REQUESTED, HELD) === REQUESTED) Atomics.notify(gate, STATE);
      const waiting = Atomics.waitAsync(gate, STATE, HELD, left);
      if (waiting.async) await waiting.value;
    }
  })();
}

/**
 * The event loop's own guard (see database.ts), for when the checkpointer is slow to come (a
 * checkpoint stalled on fsync while writes pour in): asks for the hold itself, so writes wait
 * until the checkpointer has restarted the WAL and opens the gate.
 */
export function requestHold(gate: WalGate): void {
  Atomics.compareExchange(gate, STATE, OPEN, REQUESTED);
}

/** Whether writes are asked to hold (by the guard, or by the checkpointer). */
export function holdRequested(gate: WalGate): boolean {
  return Atomics.load(gate, STATE) !== OPEN;
}

/**
 * The checkpointer's side: asks the hot path to hold its writes, waits up to `ackWaitMs` for it
 * to say it does (it says so at its next write; no write within that time means none is under
 * way: the hot path's transactions run synchronously from BEGIN to COMMIT), runs `body`, and
 * opens the gate again whatever happened.
 */
export function withWritesHeld<T>(gate: WalGate, ackWaitMs: number, body: () => T): T {
  Atomics.store(gate, STATE, REQUESTED);
  try {
    Atomics.wait(gate, STATE, REQUESTED, ackWaitMs);
    return body();
  } finally {
    Atomics.store(gate, STATE, OPEN);
    Atomics.notify(gate, STATE);
  }
}
