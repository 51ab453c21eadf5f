/**
 * The WAL checkpointer (a thread beside the event loop) sleeps while the hot path writes nothing,
 * and the next write wakes it. Regression: it looked at the WAL file every 10 ms whatever happened,
 * and the event loop's hard-stop guard did the same beside it: an idle service spent ~4 % of a
 * core per process on timer wake-ups and stats (measured on this VM: 47 of 1,000 ticks).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Database, openDatabase } from "../../src/store/database.ts";
import { createGroupCommit, type GroupCommit } from "../../src/store/hot/sqlite-group-commit.ts";
import { checkpointerSleeps } from "../../src/store/sqlite-wal-gate.ts";

let dir: string;
let db: Database;
let commits: GroupCommit;
let gate: Int32Array;
let insert: () => void;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "identity-ckpt-"));
  db = await openDatabase({
    url: `file:${join(dir, "t.db")}`,
    poolSize: 1,
    connectTimeoutMs: 1000,
    statementTimeoutMs: 5000,
  });
  if (db.driver.dialect !== "sqlite") throw new Error("a SQLite database was expected");
  const { db: connection, walGate, beforeWrite } = db.driver;
  await db.client.$executeRawUnsafe("PRAGMA journal_mode = WAL");
  await db.client.$executeRawUnsafe("CREATE TABLE t (n INTEGER NOT NULL)");
  gate = walGate;
  // The hot path's way of writing: the group commit, with the database's own gate and hook.
  commits = createGroupCommit(connection, (sql) => void connection.prepare(sql).run(), {
    statementTimeoutMs: 5000,
    walGate,
    beforeWrite,
  });
  const statement = connection.prepare("INSERT INTO t (n) VALUES (1)");
  insert = () => void statement.run();
});
afterAll(async () => {
  await db?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function until(check: () => boolean, ms: number): Promise<number> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return Date.now() - started;
}

it("sleeps once the hot path has written nothing for a second, and wakes at its next write", async () => {
  await commits.transaction(insert);
  const wrote = Date.now();
  await until(() => checkpointerSleeps(gate), 10_000);
  // Not while writes are recent: it goes on looking every 10 ms for a second after the last.
  expect(Date.now() - wrote).toBeGreaterThanOrEqual(900);

  for (let round = 0; round < 3; round++) {
    await commits.transaction(insert);
    await until(() => !checkpointerSleeps(gate), 5_000);
    await until(() => checkpointerSleeps(gate), 10_000);
  }
  const [row] = await db.client.$queryRawUnsafe<{ n: number | bigint }[]>("SELECT count(*) AS n FROM t");
  expect(Number(row!.n)).toBe(4);
});
