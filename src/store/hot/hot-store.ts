import type { Database } from "../database.ts";
import { createPostgresHotStore } from "./postgresql.ts";
import { createSqliteHotStore, type HotStore } from "./sqlite.ts";

/** The hot path's store on the database's own driver (see sqlite.ts and postgresql.ts). */
export function createHotStore(database: Database): HotStore {
  const options = { statementTimeoutMs: database.statementTimeoutMs, onQuery: database.onQuery };
  return database.driver.dialect === "sqlite"
    ? createSqliteHotStore(database.driver.db, {
        ...options,
        walGate: database.driver.walGate,
        beforeWrite: database.driver.beforeWrite,
      })
    : createPostgresHotStore(database.driver.pool, options);
}
