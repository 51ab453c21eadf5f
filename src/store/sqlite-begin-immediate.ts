import type { PrismaBetterSqlite3 } from "@prisma/adapter-better-sqlite3";
import type BetterSqlite3 from "better-sqlite3";

/**
 * Prisma's transactions on SQLite start with a deferred `BEGIN`: the write lock is taken at the
 * first write. With several processes on one file (server.workers, the admin tool beside the
 * service), a transaction that read first and then writes fails at once with SQLITE_BUSY when
 * another process committed in between: no busy timeout can help it, its snapshot is stale. With
 * `BEGIN IMMEDIATE` the write lock is taken first, waited for under the busy timeout
 * (`statement_timeout_ms`), and the transaction then runs on current data. (The hot path's own
 * transactions already begin so.)
 *
 * Unlike a deferred `BEGIN`, `BEGIN IMMEDIATE` can fail: SQLITE_READONLY (a read-only file or
 * `query_only`), SQLITE_BUSY (the lock not had within the busy timeout), SQLITE_FULL, an I/O
 * error. The adapter (7.10) takes its transaction lock before its `BEGIN` and does not give it
 * back when `BEGIN` throws, so one refused `BEGIN` left every later Prisma transaction waiting
 * for that lock until Prisma gave up ("Unable to start a transaction in the given time", P2028,
 * `internal`) even after the fault was gone. So a refused `BEGIN IMMEDIATE` does not throw inside
 * the adapter: the error is kept, the transaction the adapter hands back (nothing began on the
 * connection) is released at once, and the error is thrown as the adapter throws a failed
 * statement's, so it reaches the stores with its SQLite code (prisma-errors.ts: `unavailable`).
 */
export function beginImmediate(
  adapter: Awaited<ReturnType<PrismaBetterSqlite3["connect"]>>,
  connection: BetterSqlite3.Database,
): void {
  let refused = undefined as { error: unknown } | undefined;
  const prepare = connection.prepare.bind(connection);
  const begin = {
    run: () => {
      try {
        return prepare("BEGIN IMMEDIATE").run();
      } catch (error) {
        refused = { error };
        return { changes: 0, lastInsertRowid: 0 };
      }
    },
  };
  connection.prepare = ((sql: string) => (sql === "BEGIN" ? begin : prepare(sql))) as typeof connection.prepare;
  const startTransaction = adapter.startTransaction.bind(adapter);
  const failedStatement = (adapter as unknown as { onError(error: unknown): never }).onError.bind(adapter);
  adapter.startTransaction = async (isolationLevel) => {
    const transaction = await startTransaction(isolationLevel);
    const failure = refused;
    refused = undefined; // the adapter's lock is held from BEGIN to here: no other BEGIN ran between
    if (failure === undefined) return transaction;
    await transaction.rollback(); // gives the adapter's lock back; there is no transaction to end
    return failedStatement(failure.error);
  };
}
