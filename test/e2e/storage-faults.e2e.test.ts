/**
 * Regression: a read-only or full database gave 500 `internal` on every sign-in
 * while /readyz said ready, and a damaged SQLite file started and reported ready. Each fault here
 * comes from the real engine: SQLite's own SQLITE_READONLY (`PRAGMA query_only` on the service's
 * one connection; file modes mean nothing to root) and SQLITE_FULL (`PRAGMA max_page_count`),
 * PostgreSQL's 25006 (`default_transaction_read_only`), a file with overwritten pages. Sign-ins
 * must answer 503 `unavailable` over REST and gRPC, /readyz must say why it is not ready, and
 * the service must recover by itself once the fault is gone. Both hot paths: prepared driver
 * statements and Prisma alone.
 */
import { openSync, closeSync, writeSync, mkdtempSync, rmSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import Sqlite from "better-sqlite3";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { postgresKind } from "../support/databases.ts";
import { startServiceProcess } from "../support/service-process.ts";
import { devIdToken, grpcSignin, grpcTarget, metadataToHeaders, restSignin, uniqueSub } from "../support/signin-e2e.ts";

const pgKind = postgresKind();

async function readyz(url: string): Promise<{ status: number; body: { status: string; reason?: string } }> {
  const res = await fetch(`${url}/readyz`);
  return { status: res.status, body: (await res.json()) as { status: string; reason?: string } };
}

/** /readyz until it answers `status` (its answer is cached for up to a second), or the last answer. */
async function readyzUntil(url: string, status: number) {
  let r = await readyz(url);
  for (let i = 0; i < 40 && r.status !== status; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    r = await readyz(url);
  }
  return r;
}

/** A sign-in over REST and one over gRPC (grpc-js, h2c) must both be refused with `unavailable`. */
async function expectSigninUnavailable(t: TestApp, client: grpc.Client): Promise<void> {
  const rest = await restSignin(t.url, { id_token: await devIdToken(t.url, uniqueSub("rest")), provider: "dev" });
  expect(rest.status).toBe(503);
  expect(rest.body["code"]).toBe("unavailable");
  expect(rest.body["status"]).toBe("unavailable");
  // Public text says what to do, nothing about files, engines or servers.
  expect(String(rest.body["message"])).not.toMatch(/SQLITE|sqlite|\.db|\/tmp|postgres|25006|read-only transaction/i);

  const result = await grpcSignin(client, { idToken: await devIdToken(t.url, uniqueSub("grpc")), provider: "dev" });
  if (!("error" in result)) throw new Error("expected gRPC to refuse the sign-in");
  expect(result.error.code).toBe(grpc.status.UNAVAILABLE);
  const trailers = metadataToHeaders(result.error.metadata);
  trailers.set("grpc-status", String(result.error.code));
  const decoded = findTrailerError(trailers);
  expect(decoded?.code).toBe(Code.Unavailable);
  expect(decoded?.findDetails(ErrorInfoSchema)[0]?.reason).toBe("unavailable");
}

async function expectSigninWorks(t: TestApp, client: grpc.Client): Promise<void> {
  const rest = await restSignin(t.url, { id_token: await devIdToken(t.url, uniqueSub("rest-ok")), provider: "dev" });
  expect(rest.status).toBe(200);
  const result = await grpcSignin(client, { idToken: await devIdToken(t.url, uniqueSub("grpc-ok")), provider: "dev" });
  if ("error" in result) throw result.error;
}

function sqliteConnection(t: TestApp): Sqlite.Database {
  const driver = t.app.database.driver;
  if (driver.dialect !== "sqlite") throw new Error("a SQLite app was expected");
  return driver.db;
}

for (const hotPath of ["driver", "prisma"] as const) {
  describe(`SQLite storage faults (hot path: ${hotPath})`, () => {
    let t: TestApp;
    let client: grpc.Client;
    beforeAll(async () => {
      t = await startTestApp({ config: { dev: true, "database.hot_path": hotPath } });
      client = new grpc.Client(grpcTarget(t.url), grpc.credentials.createInsecure());
    });
    afterAll(async () => {
      client?.close();
      await t?.close();
    });

    it("a read-only database: sign-in is 503 unavailable, /readyz not ready, both recover", async () => {
      await expectSigninWorks(t, client);
      expect((await readyz(t.url)).status).toBe(200);

      const db = sqliteConnection(t);
      db.pragma("query_only = 1"); // SQLITE_READONLY for every write on the service's connection
      try {
        await expectSigninUnavailable(t, client);
        const r = await readyzUntil(t.url, 503);
        expect(r).toEqual({ status: 503, body: { status: "not_ready", reason: "database_read_only" } });
      } finally {
        db.pragma("query_only = 0");
      }
      expect((await readyzUntil(t.url, 200)).status).toBe(200);
      await expectSigninWorks(t, client);
    });

    it("a full database (SQLITE_FULL): sign-in is 503 unavailable, /readyz not ready until space frees", async () => {
      expect((await readyz(t.url)).status).toBe(200);
      const db = sqliteConnection(t);
      const pages = Number(db.pragma("page_count", { simple: true }));
      db.pragma(`max_page_count = ${pages}`); // the database cannot grow by a page
      try {
        // Free pages inside the file are used up first; then the engine answers SQLITE_FULL.
        let rest = await restSignin(t.url, { id_token: await devIdToken(t.url, uniqueSub("fill")), provider: "dev" });
        for (let i = 0; i < 300 && rest.status === 200; i++) {
          rest = await restSignin(t.url, { id_token: await devIdToken(t.url, uniqueSub("fill")), provider: "dev" });
        }
        expect(rest.status).toBe(503);
        expect(rest.body["code"]).toBe("unavailable");
        await expectSigninUnavailable(t, client);
        const r = await readyzUntil(t.url, 503);
        expect(r).toEqual({ status: 503, body: { status: "not_ready", reason: "database_full" } });
      } finally {
        db.pragma(`max_page_count = ${pages + 100_000}`);
      }
      expect((await readyzUntil(t.url, 200)).body).toEqual({ status: "ready" });
      await expectSigninWorks(t, client);
    });
  });
}

describe("readiness probes a write, at most once a second", () => {
  let t: TestApp;
  let heartbeats = 0;
  beforeAll(async () => {
    t = await startTestApp({ overrides: { onQuery: (sql) => void (/heartbeats/i.test(sql) && heartbeats++) } });
  });
  afterAll(async () => t?.close());

  it("writes the heartbeat row, and frequent probes share one write", async () => {
    const started = Date.now();
    const first = await readyz(t.url);
    expect(first.status).toBe(200);
    const row = await t.app.database.client.heartbeat.findUnique({ where: { id: "readiness" } });
    expect(row?.at.getTime()).toBeGreaterThanOrEqual(started - 1000);
    const before = heartbeats;
    expect(before).toBeGreaterThan(0);

    // 100 probes (50 at once, then 50 one after another) within well under two seconds.
    await Promise.all(Array.from({ length: 50 }, () => readyz(t.url)));
    for (let i = 0; i < 50; i++) expect((await readyz(t.url)).status).toBe(200);
    const elapsedSeconds = (Date.now() - started) / 1000;
    const writes = heartbeats - before;
    expect(writes).toBeLessThanOrEqual(Math.ceil(elapsedSeconds) + 1);
  });
});

describe("a damaged SQLite database refuses to start", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "identity-corrupt-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("exits non-zero with a clear message and no stack trace", async () => {
    const config = { database: { url: `file:${join(dir, "identity.db")}` } };
    const first = await startServiceProcess({ config, dir, env: { NODE_ENV: "development" }, args: ["--dev"] });
    for (let i = 0; i < 5; i++) {
      const rest = await restSignin(first.url, {
        id_token: await devIdToken(first.url, uniqueSub("before")),
        provider: "dev",
      });
      expect(rest.status).toBe(200);
    }
    expect(await first.stop()).toBe(0);

    // Everything in the main file, then garbage over pages 2..6 (page 1 holds the header).
    const file = join(dir, "identity.db");
    const db = new Sqlite(file);
    db.pragma("wal_checkpoint(TRUNCATE)");
    const pageSize = Number(db.pragma("page_size", { simple: true }));
    expect(Number(db.pragma("page_count", { simple: true }))).toBeGreaterThan(10);
    expect(db.pragma("quick_check", { simple: true })).toBe("ok");
    db.close();
    const fd = openSync(file, "r+");
    writeSync(fd, Buffer.alloc(pageSize * 5, 0xa5), 0, pageSize * 5, pageSize);
    closeSync(fd);
    expect(readFileSync(file).subarray(0, 16).toString()).toBe("SQLite format 3\0");

    const refused = await startServiceProcess({ config, dir, args: ["--dev"] }).then(
      async (p) => {
        await p.stop();
        return null;
      },
      (e: unknown) => String(e),
    );
    expect(refused).not.toBeNull();
    expect(refused).toMatch(/service exited with 1:/);
    expect(refused).toMatch(
      /DatabaseIntegrityError: the SQLite database .*identity\.db is damaged \(PRAGMA quick_check: /,
    );
    expect(refused).toMatch(/Restore it from a backup/);
    expect(refused).not.toMatch(/\n\s+at /); // no stack trace
  });
});

describe("PostgreSQL read-only (default_transaction_read_only)", pgKind.suiteOptions, () => {
  for (const hotPath of ["driver", "prisma"] as const) {
    describe(`hot path: ${hotPath}`, () => {
      let t: TestApp;
      let client: grpc.Client;
      let admin: pg.Client;
      let name: string;
      beforeAll(async () => {
        t = await startTestApp({ kind: pgKind, config: { dev: true, "database.hot_path": hotPath } });
        name = new URL(t.database.url).pathname.slice(1);
        admin = new pg.Client({ connectionString: process.env["TEST_DATABASE_URL"] });
        await admin.connect();
        client = new grpc.Client(grpcTarget(t.url), grpc.credentials.createInsecure());
      });
      afterAll(async () => {
        client?.close();
        await admin?.query(`ALTER DATABASE ${name} SET default_transaction_read_only = off`).catch(() => undefined);
        await admin?.end();
        await t?.close();
      });

      /** New sessions get the database's setting: end the service's current ones (as a failover would). */
      async function setReadOnly(on: boolean): Promise<void> {
        await admin.query(`ALTER DATABASE ${name} SET default_transaction_read_only = ${on ? "on" : "off"}`);
        await admin.query(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
          [name],
        );
      }

      it("sign-in is 503 unavailable, /readyz not ready, both recover", async () => {
        await expectSigninWorks(t, client);
        await setReadOnly(true);
        // The first statements after the cut may meet a terminated connection (57P01, also
        // `unavailable`); readiness settles on the real reason once new connections answer.
        const r = await (async () => {
          let last = await readyzUntil(t.url, 503);
          for (let i = 0; i < 30 && last.body.reason !== "database_read_only"; i++) {
            await new Promise((resolve) => setTimeout(resolve, 200));
            last = await readyz(t.url);
          }
          return last;
        })();
        expect(r).toEqual({ status: 503, body: { status: "not_ready", reason: "database_read_only" } });
        await expectSigninUnavailable(t, client);

        await setReadOnly(false);
        expect((await readyzUntil(t.url, 200)).body).toEqual({ status: "ready" });
        await expectSigninWorks(t, client);
      });
    });
  }
});
