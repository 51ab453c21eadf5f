import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import {
  checkpointerSleeps,
  createWalGate,
  noteWrite,
  whenWritesOpen,
  writesSoFar,
} from "../../src/store/sqlite-wal-gate.ts";

/**
 * The gate between the hot path and the WAL checkpointer, with the checkpointer's side
 * in a real worker thread. Values: 0 open, 1 requested, 2 held.
 */

const GATE_MODULE = new URL("../../src/store/sqlite-wal-gate.ts", import.meta.url).href;

/** Runs `holds` passes of the checkpointer's side back to back; resolves with whether each body saw the hot path holding. */
function checkpointerHolds(
  gate: Int32Array,
  holds: number,
  ackWaitMs: number,
): { done: Promise<boolean[]>; worker: Worker } {
  const worker = new Worker(
    `const { parentPort, workerData } = require("node:worker_threads");
    import(workerData.module).then(({ withWritesHeld }) => {
      const seen = [];
      for (let i = 0; i < workerData.holds; i++) seen.push(withWritesHeld(workerData.gate, workerData.ackWaitMs, () => Atomics.load(workerData.gate, 0) === 2));
      parentPort.postMessage(seen);
    });`,
    { eval: true, workerData: { gate, holds, ackWaitMs, module: GATE_MODULE } },
  );
  const done = new Promise<boolean[]>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  return { done, worker };
}

/** The checkpointer's quiet-time sleep in a real worker thread; resolves with how long it slept, ms. */
function checkpointerSleep(gate: Int32Array, seen: number, maxMs: number): Promise<number> {
  const worker = new Worker(
    // The port's listener keeps the thread alive while it waits (as the checkpointer's does).
    `const { parentPort, workerData } = require("node:worker_threads");
    parentPort.on("message", () => process.exit(0));
    import(workerData.module).then(async ({ sleepUntilWrite }) => {
      const started = Date.now();
      await sleepUntilWrite(workerData.gate, workerData.seen, workerData.maxMs);
      parentPort.postMessage(Date.now() - started);
    });`,
    { eval: true, workerData: { gate, seen, maxMs, module: GATE_MODULE } },
  );
  return new Promise<number>((resolve, reject) => {
    worker.once("message", (ms: number) => {
      worker.postMessage("exit");
      resolve(ms);
    });
    worker.once("error", reject);
  });
}

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 1));
  }
}

describe("the WAL write gate", () => {
  it("costs nothing while open", () => {
    expect(whenWritesOpen(createWalGate(), 1000)).toBeNull();
  });

  it("holds a write until the checkpointer opens again, and says it holds", async () => {
    const gate = createWalGate();
    const { done } = checkpointerHolds(gate, 1, 2000);
    await until(() => Atomics.load(gate, 0) === 1);
    const held = whenWritesOpen(gate, 5000);
    expect(held).not.toBeNull();
    await held;
    expect(Atomics.load(gate, 0)).toBe(0);
    expect(await done).toEqual([true]);
  });

  it("acknowledges a request that comes again while it waits, instead of spinning until the checkpointer gives up", async () => {
    const gate = createWalGate();
    const ackWaitMs = 1500;
    const { done } = checkpointerHolds(gate, 2, ackWaitMs);
    await until(() => Atomics.load(gate, 0) === 1);
    const started = Date.now();
    const held = whenWritesOpen(gate, 10_000);
    // Busy meanwhile (as an event loop under load is): the first hold ends and the second is
    // asked for before this side sees the gate open.
    const busyUntil = Date.now() + 100;
    while (Date.now() < busyUntil) {
      // spin
    }
    await held;
    expect(await done).toEqual([true, true]);
    expect(Date.now() - started).toBeLessThan(ackWaitMs);
  });

  it("gives up waiting after its limit: a stuck checkpointer delays writes, never stops them", async () => {
    const gate = createWalGate();
    Atomics.store(gate, 0, 1); // asked, never opened again
    const started = Date.now();
    await whenWritesOpen(gate, 50);
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect(Atomics.load(gate, 0)).toBe(2);
  });

  it("wakes the sleeping checkpointer at the hot path's next write, long before its own time is up", async () => {
    const gate = createWalGate();
    const slept = checkpointerSleep(gate, writesSoFar(gate), 60_000);
    await until(() => checkpointerSleeps(gate));
    await new Promise((r) => setTimeout(r, 50));
    expect(checkpointerSleeps(gate)).toBe(true); // asleep until a write
    noteWrite(gate);
    expect(await slept).toBeLessThan(10_000);
    expect(checkpointerSleeps(gate)).toBe(false);
  });

  it("does not let the checkpointer sleep past a write it has not seen yet", async () => {
    const gate = createWalGate();
    const seen = writesSoFar(gate);
    noteWrite(gate); // lands between the checkpointer's look and its sleep
    expect(await checkpointerSleep(gate, seen, 60_000)).toBeLessThan(10_000);
    expect(checkpointerSleeps(gate)).toBe(false);
  });
});
