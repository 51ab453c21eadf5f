import { describe, expect, it } from "vitest";
import { DomainError } from "../../src/core/errors.ts";
import { instrumentMethods } from "../../src/telemetry/instrument.ts";

describe("instrumentMethods", () => {
  const store = {
    calls: 0,
    async read(x: number) {
      this.calls++;
      return x * 2;
    },
    async fail(): Promise<never> {
      throw new DomainError("unavailable", "down");
    },
  };

  it("returns the target itself when there is nothing to observe or trace (tracing and metrics cost nothing then)", () => {
    expect(instrumentMethods(store, { read: "read" }, { spanPrefix: "db" })).toBe(store);
  });

  it("times each call of the named methods, passing results, `this` and errors through", async () => {
    const seen: [string, number][] = [];
    const timed = instrumentMethods(
      store,
      { read: "read_op", fail: "fail_op" },
      { spanPrefix: "db", observe: (op, s) => seen.push([op, s]) },
    );
    expect(timed).not.toBe(store);
    expect(await timed.read(21)).toBe(42);
    expect(store.calls).toBe(1);
    await expect(timed.fail()).rejects.toMatchObject({ code: "unavailable" });
    expect(seen.map(([op]) => op)).toEqual(["read_op", "fail_op"]);
    for (const [, seconds] of seen) expect(seconds).toBeGreaterThanOrEqual(0);
  });
});
