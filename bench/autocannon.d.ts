// The part of autocannon's programmatic API (v9, CommonJS, no bundled types) that bench/load.ts uses.
declare module "autocannon" {
  import type { EventEmitter } from "node:events";

  namespace autocannon {
    interface RequestSpec {
      method?: string;
      path?: string;
      headers?: Record<string, string>;
      body?: string | Buffer;
    }
    interface Request extends RequestSpec {
      /** Called before every request; its result is sent. `context` is reset between requests when there is one entry. */
      setupRequest?: (
        req: RequestSpec & Record<string, unknown>,
        context: Record<string, unknown>,
      ) => RequestSpec & Record<string, unknown>;
      /** Called with every response (the body is buffered only when this is given). */
      onResponse?: (
        status: number,
        body: string,
        context: Record<string, unknown>,
        headers: Record<string, string | string[]>,
      ) => void;
    }
    interface Options {
      url: string;
      connections?: number;
      pipelining?: number;
      /** Seconds; ignored when `amount` is given. */
      duration?: number;
      /** Total requests; overrides `duration`. */
      amount?: number;
      timeout?: number;
      method?: string;
      headers?: Record<string, string>;
      body?: string;
      requests?: Request[];
      /** Milliseconds between samples; the run ends at the first sample after it was stopped. */
      sampleInt?: number;
      excludeErrorStats?: boolean;
    }
    interface Result {
      errors: number;
      timeouts: number;
      non2xx: number;
      resets: number;
      statusCodeStats: Record<string, { count: number }>;
      start: Date;
      finish: Date;
      [key: string]: unknown;
    }
    interface Instance extends EventEmitter {
      stop(): void;
      on(
        event: "response",
        listener: (client: unknown, statusCode: number, resBytes: number, responseTime: number) => void,
      ): this;
      on(event: "reqError", listener: (error: Error) => void): this;
      on(event: "done", listener: (result: Result) => void): this;
      on(event: string, listener: (...args: unknown[]) => void): this;
    }
  }

  function autocannon(
    options: autocannon.Options,
    callback: (error: Error | null, result: autocannon.Result) => void,
  ): autocannon.Instance;
  export = autocannon;
}
