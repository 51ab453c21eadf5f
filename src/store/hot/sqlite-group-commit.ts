/**
 * How the SQLite hot path takes its turn on the one connection it shares with Prisma: reads wait
 * (without blocking the event loop) while a Prisma interactive transaction holds the connection;
 * writes are grouped into one transaction per turn of the event loop (group commit), held while the
 * WAL checkpointer asks (sqlite-wal-gate.ts).
 */
import type BetterSqlite3 from "better-sqlite3";
import { DomainError } from "../../core/errors.ts";
import { storeError } from "../prisma-errors.ts";
import { type WalGate, whenWritesOpen } from "../sqlite-wal-gate.ts";

export interface GroupCommit {
  /** `body` (synchronous) inside a write transaction shared with the turn's other writes. */
  transaction<T>(body: () => T): Promise<T>;
  /** `body` (synchronous) once no Prisma transaction holds the connection. */
  read<T>(body: () => T): Promise<T>;
}

export function createGroupCommit(
  db: BetterSqlite3.Database,
  run: (sql: string) => void,
  options: {
    statementTimeoutMs: number;
    walGate?: WalGate | undefined;
    /** Before each write transaction (database.ts: counts it for the checkpointer; the WAL's hard stop). */
    beforeWrite?: (() => void) | undefined;
  },
): GroupCommit {
  const { walGate } = options;
  /** Waits (without blocking the event loop) while a Prisma transaction holds the connection. */
  async function idle(): Promise<void> {
    if (!db.inTransaction) return;
    const deadline = Date.now() + options.statementTimeoutMs;
    while (db.inTransaction) {
      if (Date.now() > deadline) {
        throw new DomainError("unavailable", "the service is temporarily unavailable; try again shortly", {
          cause: new Error("SQLite connection busy with another transaction"),
        });
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Group commit: writes that arrive in the same turn of the event loop share one transaction
   * (one WAL append and one commit for all); one write's failure (a lost unique race, a replayed
   * token) fails only that write (`together`, then `apart`). Every caller's promise settles after
   * the COMMIT: nothing is acknowledged before it is durable.
   */
  interface Pending {
    body: () => unknown;
    resolve: (value: unknown) => void;
    reject: (error: unknown) => void;
  }
  let queue: Pending[] = [];

  function transaction<T>(body: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      queue.push({ body, resolve: resolve as (value: unknown) => void, reject });
      if (queue.length === 1) setImmediate(() => void flush());
    });
  }

  async function flush(): Promise<void> {
    options.beforeWrite?.();
    try {
      // Per write transaction: one shared-memory read. When the checkpointer asks, the writes
      // wait (asynchronously) while it copies the last frames back, so the WAL can restart.
      const held = walGate === undefined ? null : whenWritesOpen(walGate, Math.min(1000, options.statementTimeoutMs));
      if (held !== null) await held;
      await writeLock();
    } catch (e) {
      // A refused BEGIN IMMEDIATE (read-only file, I/O error) is a storage fault like any other.
      const error = storeError(e);
      const batch = queue;
      queue = [];
      for (const p of batch) p.reject(error);
      return;
    }
    const batch = queue;
    queue = [];
    let outcomes: Outcome[];
    try {
      outcomes = together(batch) ?? apart(batch);
    } catch (e) {
      rollback();
      const error = storeError(e);
      for (const p of batch) p.reject(error);
      return;
    }
    batch.forEach((p, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) p.resolve(outcome.value);
      else p.reject(outcome.error);
    });
  }

  type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

  function rollback(): void {
    if (!db.inTransaction) return;
    try {
      run("ROLLBACK");
    } catch {
      // The connection rolled back by itself (e.g. SQLITE_FULL): nothing left to undo.
    }
  }

  /**
   * The common case: every write of the turn in one transaction, no savepoints. A savepoint costs
   * more than its two statements: each page a write first touches inside one is copied to the
   * statement journal, so the batch runs bare and only a failure pays for isolation. When one write
   * throws, the whole transaction is rolled back and null says "run them apart". Each body is
   * synchronous and writes only through this connection, so running it again from the same state
   * decides the same (the rolled-back run left nothing behind). A lone write's failure is its own.
   */
  function together(batch: Pending[]): Outcome[] | null {
    const values: unknown[] = [];
    for (const p of batch) {
      try {
        values.push(p.body());
      } catch (e) {
        rollback();
        if (batch.length === 1) return [{ ok: false, error: storeError(e) }];
        return null;
      }
    }
    run("COMMIT");
    return values.map((value) => ({ ok: true, value }));
  }

  /** A batch in which a write failed, again: each write in its own savepoint, so a failure rolls back only itself. */
  function apart(batch: Pending[]): Outcome[] {
    const outcomes: Outcome[] = [];
    // The rare path: the lock was given back with the rollback; this waits for it under the busy timeout.
    run("BEGIN IMMEDIATE");
    for (const p of batch) {
      run("SAVEPOINT w");
      try {
        const value = p.body();
        run("RELEASE w");
        outcomes.push({ ok: true, value });
      } catch (e) {
        run("ROLLBACK TO w");
        run("RELEASE w");
        outcomes.push({ ok: false, error: storeError(e) });
      }
    }
    run("COMMIT");
    return outcomes;
  }

  // The connection's busy timeout waits by sleeping on the event loop: fine for Prisma's rare
  // transactions, not for the hot path's. Its BEGIN IMMEDIATE asks with none and waits here.
  // (SQLite applies `PRAGMA busy_timeout` when the statement is prepared: one prepared statement
  // run again would not set it again, so each is prepared anew, twice per write transaction.)
  // What it is restored to is the connection's own setting (database.ts opens it with the
  // statement timeout), read once here rather than written a second time.
  const usualWait = `busy_timeout = ${Number(db.pragma("busy_timeout", { simple: true }))}`;

  /**
   * Takes the write lock (`BEGIN IMMEDIATE`) without blocking the event loop while another
   * process holds it (server.workers on one file, the admin tool): it asks without a busy
   * timeout and, refused, tries again on a later turn, while requests go on being served and the
   * writes arriving meanwhile join this batch. Gives up as `unavailable` after the statement timeout.
   */
  async function writeLock(): Promise<void> {
    const deadline = Date.now() + options.statementTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      await idle();
      if (tryBegin()) return;
      if (Date.now() > deadline) {
        throw new DomainError("unavailable", "the service is temporarily unavailable; try again shortly", {
          cause: new Error("SQLite write lock held by another process past the statement timeout"),
        });
      }
      // The first retries on the next turn (a lock is typically held for a transaction's
      // milliseconds), then every millisecond.
      await new Promise<void>((resolve) => (attempt < 2 ? setImmediate(resolve) : setTimeout(resolve, 1)));
    }
  }

  function tryBegin(): boolean {
    db.pragma("busy_timeout = 0");
    try {
      run("BEGIN IMMEDIATE");
      return true;
    } catch (e) {
      if ((e as { code?: unknown })?.code === "SQLITE_BUSY") return false;
      throw e;
    } finally {
      db.pragma(usualWait);
    }
  }

  async function read<T>(body: () => T): Promise<T> {
    await idle();
    try {
      return body();
    } catch (e) {
      throw storeError(e);
    }
  }

  return { transaction, read };
}
