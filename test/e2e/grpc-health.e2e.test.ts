import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/pb/grpc/health/v1/health_pb.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { createHealthClient } from "../support/health-client.ts";
import { type ServiceProcess, startServiceProcess } from "../support/service-process.ts";
import { devIdToken } from "../support/signin-e2e.ts";

const SERVED = [
  "identity.v1.AuthService",
  "identity.v1.UserService",
  "identity.v1.MfaService",
  "identity.v1.AdminService",
  "grpc.health.v1.Health",
];

/** Resolves with `promise`, or rejects after `ms` (so a missing message fails fast, not at the test timeout). */
function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms)),
  ]);
}

/**
 * grpc.health.v1.Health on the service port, its statuses following readiness (the same answer
 * as GET /readyz): with @grpc/grpc-js through the `grpc-health-check` package's service
 * definition, with Connect clients (Connect protocol over HTTP/1.1, gRPC over HTTP/2), and plain
 * fetch.
 */
describe("gRPC health", () => {
  let t: TestApp;
  let health: ReturnType<typeof createHealthClient>;

  beforeAll(async () => {
    t = await startTestApp();
    health = createHealthClient(t.url);
  });
  afterAll(async () => {
    health?.close();
    await t?.close();
  });

  it("Check: SERVING for the server and every served service, with and without a deadline (both unary paths)", async () => {
    for (const deadline of [undefined, 5000]) {
      for (const service of ["", ...SERVED]) {
        expect(await health.check(service, deadline), `${service} deadline ${deadline}`).toEqual({ status: "SERVING" });
      }
    }
  });

  it("an unknown service: Check is NOT_FOUND; Watch says SERVICE_UNKNOWN and keeps the call open", async () => {
    for (const deadline of [undefined, 5000]) {
      const r = await health.check("identity.v1.NoSuchService", deadline);
      expect("error" in r && r.error.code).toBe(5); // NOT_FOUND
    }
    const watch = health.watch("identity.v1.NoSuchService");
    expect(await within(5000, watch.next(), "watch")).toBe("SERVICE_UNKNOWN");
    const endedEarly = await Promise.race([
      watch.ended.then(() => true),
      new Promise((r) => setTimeout(() => r(false), 300)),
    ]);
    expect(endedEarly).toBe(false);
    watch.cancel();
  });

  it("over Connect (HTTP/1.1, JSON and binary) and gRPC transports: Check, List and Watch", async () => {
    const transports = [
      createConnectTransport({ baseUrl: t.url, httpVersion: "1.1" }),
      createConnectTransport({ baseUrl: t.url, httpVersion: "1.1", useBinaryFormat: true }),
      createGrpcTransport({ baseUrl: t.url }),
    ];
    for (const transport of transports) {
      const client = createClient(Health, transport);
      expect((await client.check({ service: "identity.v1.AuthService" })).status).toBe(Status.SERVING);
      const list = await client.list({});
      expect(Object.keys(list.statuses).sort()).toEqual(["", ...SERVED].sort());
      expect(Object.values(list.statuses).map((s) => s.status)).toEqual(Array(SERVED.length + 1).fill(Status.SERVING));
      const abort = new AbortController();
      const stream = client.watch({ service: "" }, { signal: abort.signal });
      const first = await within(5000, stream[Symbol.asyncIterator]().next(), "watch");
      expect(first.value?.status).toBe(Status.SERVING);
      abort.abort();
    }
    // What a curl user sends: Connect unary JSON.
    const r = await fetch(`${t.url}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ status: "SERVING" });
  });

  it("drain: /readyz 503, Check NOT_SERVING, open watches hear NOT_SERVING at once while requests are still served; close ends the watches", async () => {
    const d = await startTestApp({ config: { "server.shutdown_timeout_ms": 20_000 } });
    const client = createHealthClient(d.url);
    const connectWatch = createClient(Health, createGrpcTransport({ baseUrl: d.url })).watch({
      service: "identity.v1.AuthService",
    });
    try {
      const watches = [client.watch(""), client.watch("identity.v1.AuthService")];
      const connectIt = connectWatch[Symbol.asyncIterator]();
      for (const w of watches) expect(await within(5000, w.next(), "watch")).toBe("SERVING");
      expect((await within(5000, connectIt.next(), "connect watch")).value?.status).toBe(Status.SERVING);

      d.app.drain();
      for (const w of watches) expect(await within(1000, w.next(), "watch after drain")).toBe("NOT_SERVING");
      expect((await within(1000, connectIt.next(), "connect watch after drain")).value?.status).toBe(
        Status.NOT_SERVING,
      );
      expect(await client.check("")).toEqual({ status: "NOT_SERVING" });
      expect(await client.check("identity.v1.AuthService", 5000)).toEqual({ status: "NOT_SERVING" });
      const ready = await fetch(`${d.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toEqual({ status: "not_ready", reason: "draining" });
      // Still serving everything else: liveness, keys, RPCs.
      expect((await fetch(`${d.url}/healthz`)).status).toBe(200);
      expect((await fetch(`${d.url}/.well-known/jwks.json`)).status).toBe(200);

      // close() ends the open watches (status OK, clients retry elsewhere) instead of waiting
      // out shutdown_timeout_ms for them.
      const started = Date.now();
      await d.close();
      expect(Date.now() - started).toBeLessThan(5000);
      for (const w of watches) {
        expect((await within(2000, w.ended, "watch end")).code).toBe(0);
        expect(w.pending()).toEqual([]);
      }
      expect((await within(2000, connectIt.next(), "connect watch end")).done).toBe(true);
    } finally {
      client.close();
    }
  });
});

/**
 * SIGTERM on the real process: readiness and health go NOT_SERVING at once, the process keeps
 * serving through `server.shutdown_delay_ms`, then drains and exits 0.
 */
describe("shutdown sequence of the service process", () => {
  let service: ServiceProcess | undefined;
  afterAll(async () => {
    await service?.stop();
  });

  it("SIGTERM: NOT_SERVING first, still serving during the pre-stop delay, then drain and exit 0", async () => {
    const delayMs = 2000;
    service = await startServiceProcess({ config: { server: { shutdown_delay_ms: delayMs } }, args: ["--dev"] });
    const { url } = service;
    const client = createHealthClient(url);
    try {
      const watch = client.watch("");
      expect(await within(5000, watch.next(), "watch")).toBe("SERVING");
      const exited = new Promise<number | null>((resolve) => service!.child.once("exit", resolve));

      const signalled = Date.now();
      service.child.kill("SIGTERM");
      expect(await within(delayMs, watch.next(), "watch after SIGTERM")).toBe("NOT_SERVING");
      expect(Date.now() - signalled).toBeLessThan(delayMs);

      // During the delay: not ready, yet every request is still answered, sign-ins included.
      expect((await fetch(`${url}/readyz`)).status).toBe(503);
      expect(await client.check("")).toEqual({ status: "NOT_SERVING" });
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      const idToken = await devIdToken(url, "late-caller");
      const signin = await fetch(`${url}/auth/id-token/signin`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ id_token: idToken, provider: "dev" }),
      });
      expect(signin.status).toBe(200);
      expect(Date.now() - signalled).toBeLessThan(delayMs);

      expect(await exited).toBe(0);
      expect(Date.now() - signalled).toBeGreaterThanOrEqual(delayMs);
      expect((await within(2000, watch.ended, "watch end")).code).toBe(0);
      const logs = service.logs();
      expect(logs.indexOf('"msg":"not ready; draining after the pre-stop delay"')).toBeGreaterThan(-1);
      expect(logs.indexOf('"msg":"draining"')).toBeGreaterThan(
        logs.indexOf('"msg":"not ready; draining after the pre-stop delay"'),
      );
      expect(logs).toContain('"msg":"stopped"');
      await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    } finally {
      client.close();
    }
  });

  it("SIGINT skips the pre-stop delay, and a second SIGTERM a moment later cuts it short", async () => {
    // A second signal within 1 s is the same request (see npm-start.e2e.test.ts); this one is deliberate.
    for (const signals of [["SIGINT"], ["SIGTERM", "SIGTERM"]] as const) {
      service = await startServiceProcess({ config: { server: { shutdown_delay_ms: 60_000 } }, args: ["--dev"] });
      const exited = new Promise<string>((resolve) =>
        service!.child.once("exit", (code, signal) => resolve(`${code} ${signal}`)),
      );
      const started = Date.now();
      for (const signal of signals) {
        service.child.kill(signal);
        await new Promise((r) => setTimeout(r, 1500));
      }
      expect(await within(10_000, exited, `exit after ${signals.join(", ")}`), signals.join(", ")).toBe("0 null");
      expect(Date.now() - started).toBeLessThan(10_000);
      await service.stop(); // Already gone: removes its directory.
    }
  });
});
