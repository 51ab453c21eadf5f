/**
 * Whether this replica should be sent traffic: the one answer behind `GET /readyz` and the gRPC
 * health service. Ready means the database answers and the process is not draining; once
 * draining (SIGTERM) it never becomes ready again.
 */
export type ReadyState = "ready" | "draining" | "database_unavailable";

export interface Readiness {
  /** The state now: pings the database unless draining. */
  check(): Promise<ReadyState>;
  /** From now on not ready; every watch hears it at once. */
  drain(): void;
  /**
   * The state now, then each change, until `signal` aborts or `close()`. While anyone watches,
   * the database is pinged every `pollIntervalMs` (one shared ping, whatever the number of watches).
   */
  watch(signal: AbortSignal): AsyncGenerator<ReadyState>;
  /** Ends every watch (the server is closing) and stops polling. */
  close(): void;
}

export function createReadiness(options: { ping: () => Promise<void>; pollIntervalMs: number }): Readiness {
  let draining = false;
  let closed = false;
  /** The last state seen by any check, and a counter bumped when it changes (or on close). */
  let current: ReadyState | undefined;
  let version = 0;
  const wakers = new Set<() => void>();
  let watchers = 0;
  let poller: NodeJS.Timeout | undefined;
  let polling = false;

  function publish(state: ReadyState): void {
    if (state === current) return;
    current = state;
    version += 1;
    for (const wake of wakers) wake();
  }

  async function check(): Promise<ReadyState> {
    if (draining) return "draining";
    let state: ReadyState;
    try {
      await options.ping();
      state = "ready";
    } catch {
      state = "database_unavailable";
    }
    // Draining may have begun while the ping was out; it wins.
    if (draining) return "draining";
    publish(state);
    return state;
  }

  function startPolling(): void {
    watchers += 1;
    if (poller !== undefined) return;
    poller = setInterval(() => {
      if (polling || draining) return;
      polling = true;
      // check() never rejects (a failed ping is its "database_unavailable" answer).
      void check().finally(() => (polling = false));
    }, options.pollIntervalMs);
    poller.unref();
  }

  function stopPolling(): void {
    watchers -= 1;
    if (watchers > 0 || poller === undefined) return;
    clearInterval(poller);
    poller = undefined;
  }

  return {
    check,
    drain() {
      draining = true;
      publish("draining");
    },
    async *watch(signal) {
      let wake: (() => void) | undefined;
      const waker = () => wake?.();
      wakers.add(waker);
      signal.addEventListener("abort", waker);
      startPolling();
      try {
        let seen = version;
        let state = await check();
        let sent: ReadyState | undefined;
        for (;;) {
          if (state !== sent) {
            yield state;
            sent = state;
          }
          // Wait for a change this watch has not seen yet (one may have come while it yielded).
          while (version === seen && !closed && !signal.aborted) {
            await new Promise<void>((resolve) => (wake = resolve));
            wake = undefined;
          }
          if (closed || signal.aborted) return;
          seen = version;
          state = current ?? state;
        }
      } finally {
        wakers.delete(waker);
        signal.removeEventListener("abort", waker);
        stopPolling();
      }
    },
    close() {
      closed = true;
      draining = true;
      version += 1;
      for (const wake of wakers) wake();
      if (poller !== undefined) clearInterval(poller);
      poller = undefined;
    },
  };
}
