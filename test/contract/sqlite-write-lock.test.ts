/**
 * Two processes on one SQLite file (server.workers > 1): a Prisma transaction that reads and
 * then writes must not fail with SQLITE_BUSY because another process committed in between.
 * Regression: Prisma's SQLite adapter began its transactions with a deferred `BEGIN`, so the
 * write found its read snapshot stale and failed at once (no busy timeout applies), which reached
 * clients as `unavailable`. The other process is played by a thread with a connection of its own.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { afterAll, beforeAll, expect, it } from "vitest";
import { DomainError } from "../../src/core/errors.ts";
import { type Database, openDatabase } from "../../src/store/database.ts";
import { createGroupCommit } from "../../src/store/hot/sqlite-group-commit.ts";
import { storageFault } from "../../src/store/prisma-errors.ts";

let dir: string;
let db: Database;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "identity-lock-"));
  db = await openDatabase({
    url: `file:${join(dir, "t.db")}`,
    poolSize: 1,
    connectTimeoutMs: 1000,
    statementTimeoutMs: 5000,
  });
  await db.client.$executeRawUnsafe("PRAGMA journal_mode = WAL");
  await db.client.$executeRawUnsafe("CREATE TABLE counter (n INTEGER NOT NULL)");
  await db.client.$executeRawUnsafe("INSERT INTO counter (n) VALUES (0)");
});
afterAll(async () => {
  await db?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Another connection (a thread) adds 100 to the counter, waiting up to 5 s for the write lock. */
function otherWriter(file: string): { done: Promise<string> } {
  const worker = new Worker(
    `const { workerData } = require("node:worker_threads");
     const Sqlite = require(workerData.module);
     const db = new Sqlite(workerData.file, { timeout: 5000 });
     try { db.prepare("UPDATE counter SET n = n + 100").run(); require("node:worker_threads").parentPort.postMessage("ok"); }
     catch (e) { require("node:worker_threads").parentPort.postMessage(String(e.code ?? e)); }
     finally { db.close(); }`,
    { eval: true, workerData: { file, module: require.resolve("better-sqlite3") } },
  );
  return { done: new Promise((resolve) => worker.once("message", (m: string) => resolve(m))) };
}

it("a read-then-write transaction holds the write lock from its start: another process's write waits, neither fails", async () => {
  let other: { done: Promise<string> } | undefined;
  await db.client.$transaction(async (tx) => {
    await tx.$queryRawUnsafe("SELECT n FROM counter");
    other = otherWriter(join(dir, "t.db"));
    // Give the other writer time to commit if it can (with a deferred BEGIN it can, and then
    // this transaction's write below fails with SQLITE_BUSY).
    await Promise.race([other.done, new Promise((r) => setTimeout(r, 300))]);
    await tx.$executeRawUnsafe("UPDATE counter SET n = n + 1");
  });
  expect(await other!.done).toBe("ok");
  const [row] = await db.client.$queryRawUnsafe<{ n: number | bigint }[]>("SELECT n FROM counter");
  expect(Number(row!.n)).toBe(101);
});

it("a refused BEGIN IMMEDIATE fails that transaction with SQLite's code and leaves the next one free to start", async () => {
  // Regression: the adapter took its transaction lock before BEGIN and kept it when BEGIN threw,
  // so after one SQLITE_READONLY (or SQLITE_BUSY, SQLITE_FULL) at BEGIN every later transaction
  // waited for that lock until Prisma gave up: P2028, `internal`, until a restart.
  if (db.driver.dialect !== "sqlite") throw new Error("a SQLite database was expected");
  const connection = db.driver.db;
  connection.pragma("query_only = 1"); // SQLITE_READONLY at BEGIN IMMEDIATE
  try {
    for (let i = 0; i < 2; i++) {
      const refused = await db.client
        .$transaction(async (tx) => {
          await tx.$executeRawUnsafe("UPDATE counter SET n = n + 1");
        })
        .catch((e: unknown) => e);
      expect(storageFault(refused)).toBe("database_read_only");
    }
  } finally {
    connection.pragma("query_only = 0");
  }
  const started = Date.now();
  await db.client.$transaction(async (tx) => {
    await tx.$executeRawUnsafe("UPDATE counter SET n = n + 1000");
  });
  expect(Date.now() - started).toBeLessThan(1000); // not after Prisma's 2 s wait for a lock
  const [row] = await db.client.$queryRawUnsafe<{ n: number | bigint }[]>("SELECT n FROM counter");
  expect(Number(row!.n)).toBe(1101);
});

/** Another connection (a thread) takes the write lock, says so, holds it `holdMs`, then commits. */
function lockHolder(file: string, holdMs: number): { locked: Promise<void>; released: Promise<void> } {
  const worker = new Worker(
    `const { workerData, parentPort } = require("node:worker_threads");
     const Sqlite = require(workerData.module);
     const db = new Sqlite(workerData.file, { timeout: 5000 });
     db.exec("BEGIN IMMEDIATE");
     db.prepare("UPDATE counter SET n = n + 10000").run();
     parentPort.postMessage("locked");
     Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, workerData.holdMs);
     db.exec("COMMIT");
     db.close();
     parentPort.postMessage("released");`,
    { eval: true, workerData: { file, holdMs, module: require.resolve("better-sqlite3") } },
  );
  const said = (what: string) =>
    new Promise<void>((resolve) => worker.on("message", (m: string) => m === what && resolve()));
  return { locked: said("locked"), released: said("released") };
}

it("the hot path waits for another process's write lock without stopping the event loop, then writes", async () => {
  if (db.driver.dialect !== "sqlite") throw new Error("a SQLite database was expected");
  const connection = db.driver.db;
  const commits = createGroupCommit(connection, (sql) => void connection.prepare(sql).run(), {
    statementTimeoutMs: 5000,
  });
  const [before] = await db.client.$queryRawUnsafe<{ n: number | bigint }[]>("SELECT n FROM counter");
  const holder = lockHolder(join(dir, "t.db"), 400);
  await holder.locked;
  // While the lock is held, the event loop keeps turning (a busy timeout would sleep it).
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 10);
  const started = Date.now();
  try {
    const wrote = commits.transaction(() => connection.prepare("UPDATE counter SET n = n + 1").run().changes);
    await new Promise((r) => setTimeout(r, 200));
    expect(ticks).toBeGreaterThanOrEqual(10);
    expect(await wrote).toBe(1);
    await holder.released;
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
  } finally {
    clearInterval(ticker);
  }
  const [after] = await db.client.$queryRawUnsafe<{ n: number | bigint }[]>("SELECT n FROM counter");
  expect(Number(after!.n)).toBe(Number(before!.n) + 10001);
});

it("a write lock held past the statement timeout: the waiting writes fail as unavailable, none is half-done", async () => {
  if (db.driver.dialect !== "sqlite") throw new Error("a SQLite database was expected");
  const connection = db.driver.db;
  const commits = createGroupCommit(connection, (sql) => void connection.prepare(sql).run(), {
    statementTimeoutMs: 150,
  });
  const [before] = await db.client.$queryRawUnsafe<{ n: number | bigint }[]>("SELECT n FROM counter");
  const holder = lockHolder(join(dir, "t.db"), 600);
  await holder.locked;
  const refused = await Promise.allSettled([
    commits.transaction(() => connection.prepare("UPDATE counter SET n = n + 1").run()),
    commits.transaction(() => connection.prepare("UPDATE counter SET n = n + 2").run()),
  ]);
  for (const r of refused) {
    expect(r.status).toBe("rejected");
    const reason = (r as PromiseRejectedResult).reason as unknown;
    expect(reason).toBeInstanceOf(DomainError);
    expect((reason as DomainError).code).toBe("unavailable");
  }
  await holder.released;
  const [after] = await db.client.$queryRawUnsafe<{ n: number | bigint }[]>("SELECT n FROM counter");
  expect(Number(after!.n)).toBe(Number(before!.n) + 10000);
});
