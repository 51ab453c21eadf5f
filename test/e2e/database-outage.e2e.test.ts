import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { openDatabase } from "../../src/store/database.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { postgresKind } from "../support/databases.ts";
import { devIdToken } from "../support/signin-e2e.ts";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.ts";
import { createHealthClient } from "../support/health-client.ts";

const kind = postgresKind();

/**
 * The database goes away under a running service: requests fail fast with `unavailable` (503),
 * readiness says not ready, nothing hangs; when the database returns the service recovers by
 * itself, without a restart.
 */
describe("PostgreSQL outage", kind.suiteOptions, () => {
  let proxy: TcpProxy;
  let t: TestApp;

  beforeAll(async () => {
    const real = new URL(process.env["TEST_DATABASE_URL"]!);
    proxy = await startTcpProxy({ host: real.hostname, port: Number(real.port) });
    t = await startTestApp({
      kind: {
        ...kind,
        async create() {
          const db = await kind.create();
          const viaProxy = new URL(db.url);
          viaProxy.port = String(proxy.port);
          return { url: viaProxy.toString(), drop: db.drop };
        },
      },
      config: {
        dev: true,
        "database.connect_timeout_ms": 1000,
        "database.statement_timeout_ms": 2000,
        "server.health_watch_interval_ms": 200,
      },
    });
  });
  afterAll(async () => {
    await proxy?.up().catch(() => undefined);
    await t?.close();
    await proxy?.close();
  });

  async function signin(sub: string): Promise<Response> {
    const idToken = await devIdToken(t.url, sub);
    return fetch(`${t.url}/auth/id-token/signin`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id_token: idToken, provider: "dev" }),
    });
  }

  it("fails fast with unavailable and recovers when the database returns", async () => {
    expect((await signin("before")).status).toBe(200);
    expect((await fetch(`${t.url}/readyz`)).status).toBe(200);

    await proxy.down();
    const started = Date.now();
    const during = await signin("during");
    expect(during.status).toBe(503);
    expect(((await during.json()) as { code: string }).code).toBe("unavailable");
    expect(Date.now() - started).toBeLessThan(10_000);
    const ready = await fetch(`${t.url}/readyz`);
    expect(ready.status).toBe(503);

    await proxy.up();
    let after = await signin("after");
    for (let i = 0; i < 20 && after.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 250));
      after = await signin("after");
    }
    expect(after.status).toBe(200);
    expect((await fetch(`${t.url}/readyz`)).status).toBe(200);
    expect(await t.app.database.client.identity.count({ where: { subject: "during" } })).toBe(0);
  });

  it("gRPC health follows: an open Watch goes NOT_SERVING while the database is away and SERVING when it returns", async () => {
    const health = createHealthClient(t.url);
    const watch = health.watch("identity.v1.AuthService");
    try {
      expect(await watch.next()).toBe("SERVING");
      await proxy.down();
      expect(await watch.next()).toBe("NOT_SERVING");
      expect(await health.check("")).toEqual({ status: "NOT_SERVING" });
      await proxy.up();
      expect(await watch.next()).toBe("SERVING");
      expect(await health.check("", 5000)).toEqual({ status: "SERVING" });
    } finally {
      watch.cancel();
      health.close();
    }
  });
});

/**
 * PostgreSQL ends the service's idle connections (a restart, a failover, an administrator's
 * pg_terminate_backend: error 57P01 on an idle pooled connection). The process must survive —
 * an unheard `error` event on the pool would end it — and the next requests open new ones.
 */
describe("PostgreSQL ends idle connections", kind.suiteOptions, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ kind, config: { dev: true } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("keeps serving: the pool replaces the dead connections", async () => {
    const json = { "content-type": "application/json" };
    const signin = async (sub: string) =>
      fetch(`${t.url}/auth/id-token/signin`, {
        method: "POST",
        headers: json,
        body: JSON.stringify({ id_token: await devIdToken(t.url, sub), provider: "dev" }),
      });
    expect((await signin("before-terminate")).status).toBe(200);
    const pool = t.app.database.driver.dialect === "postgresql" ? t.app.database.driver.pool : null;
    expect(pool!.idleCount).toBeGreaterThan(0);
    const admin = new pg.Client({ connectionString: t.database.url });
    await admin.connect();
    try {
      const { rows } = await admin.query<{ n: number }>(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`,
      );
      expect(rows[0]!.n).toBeGreaterThan(0);
    } finally {
      await admin.end();
    }
    await new Promise((r) => setTimeout(r, 300));
    expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
    let after = await signin("after-terminate");
    for (let i = 0; i < 10 && after.status !== 200; i++) after = await signin("after-terminate");
    expect(after.status).toBe(200);
  });

  it("reports a dead idle connection before Prisma ever connected (nobody else listens then)", async () => {
    const td = await kind.create();
    const heard: unknown[] = [];
    const db = await openDatabase({
      url: td.url,
      poolSize: 2,
      connectTimeoutMs: 5000,
      statementTimeoutMs: 5000,
      onIdleConnectionError: (e) => heard.push(e),
    });
    try {
      const pool = db.driver.dialect === "postgresql" ? db.driver.pool : null;
      // The hot path's own use of the pool; Prisma has run nothing, so its adapter is not listening.
      await pool!.query("SELECT 1");
      expect(pool!.idleCount).toBe(1);
      const admin = new pg.Client({ connectionString: td.url });
      await admin.connect();
      await admin.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`,
      );
      await admin.end();
      await vi.waitFor(() => expect(heard).toHaveLength(1));
      expect((heard[0] as { code?: string }).code).toBe("57P01");
      expect((await pool!.query<{ one: number }>("SELECT 1 AS one")).rows[0]!.one).toBe(1);
    } finally {
      await db.close();
      await td.drop();
    }
  });
});
