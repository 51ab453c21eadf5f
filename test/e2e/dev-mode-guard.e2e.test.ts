/**
 * Dev mode cannot meet real data: the real process (`node src/main.ts --dev`)
 * refuses to start when it would listen beyond loopback, or over a database that holds identities
 * of providers other than the dev issuer, with a message that says why and how to force it; with
 * `--force-dev` (or FORCE_DEV=1) it starts and says so in its log.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isLoopbackHost } from "../../src/app/dev-guard.ts";
import { openDatabase } from "../../src/store/database.ts";
import { migrate } from "../../src/store/migrate.ts";
import { type ServiceProcess, startServiceProcess } from "../support/service-process.ts";

/** The message the process exited with, when startServiceProcess was refused. */
async function refusal(start: Promise<ServiceProcess>): Promise<string> {
  const outcome = await start.then(
    async (s) => {
      await s.stop();
      return null;
    },
    (e: unknown) => String(e),
  );
  if (outcome === null) throw new Error("the service started; it should have refused");
  return outcome;
}

describe("dev mode refuses to meet real data", () => {
  const dirs: string[] = [];
  const newDir = () => {
    const d = mkdtempSync(join(tmpdir(), "dev-guard-"));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("knows loopback: 127.0.0.0/8, ::1 (any spelling), localhost; nothing else", () => {
    for (const h of [
      "127.0.0.1",
      "127.1.2.3",
      "::1",
      "[::1]",
      "0:0:0:0:0:0:0:1",
      "::ffff:127.0.0.1",
      "localhost",
      "LOCALHOST",
    ]) {
      expect(isLoopbackHost(h), h).toBe(true);
    }
    for (const h of ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "::ffff:10.0.0.1", "example.com", "128.0.0.1", ""]) {
      expect(isLoopbackHost(h), h).toBe(false);
    }
  });

  it("refuses to listen beyond loopback, saying why and how to force it; nothing is opened", async () => {
    const dir = newDir();
    const message = await refusal(startServiceProcess({ config: {}, args: ["--dev"], env: { HOST: "0.0.0.0" }, dir }));
    expect(message).toMatch(/exited with 2/);
    expect(message).toMatch(/DevModeRefused: dev mode refuses to listen on 0\.0\.0\.0/);
    expect(message).toMatch(/loopback/);
    expect(message).toMatch(/--force-dev/);
    expect(message).not.toMatch(/"msg":"listening"/);
  });

  it("refuses a database with identities of another provider; starts with --force-dev or FORCE_DEV=1, and says so", async () => {
    const dir = newDir();
    const url = `file:${join(dir, "real.db")}`;
    await migrate(url);
    const db = await openDatabase({ url, poolSize: 1, connectTimeoutMs: 5000, statementTimeoutMs: 5000 });
    const at = new Date();
    await db.client.user.create({
      data: {
        id: "usr_real",
        username: "real.person",
        email: "real@example.com",
        emailNormalized: "real@example.com",
        emailVerified: true,
        createdAt: at,
      },
    });
    await db.client.identity.create({
      data: {
        id: "idn_real",
        userId: "usr_real",
        issuer: "https://accounts.example",
        subject: "real-1",
        provider: "corp",
        createdAt: at,
      },
    });
    await db.close();
    const config = { database: { url } };

    const message = await refusal(startServiceProcess({ config, args: ["--dev"], dir }));
    expect(message).toMatch(/exited with 2/);
    expect(message).toMatch(
      /DevModeRefused: dev mode refuses to start on a database with identities of other providers \(corp: 1\)/,
    );
    expect(message).toMatch(/--force-dev/);
    expect(message).not.toContain("real@example.com");

    for (const force of [{ args: ["--dev", "--force-dev"] }, { args: ["--dev"], env: { FORCE_DEV: "1" } }]) {
      const forced = await startServiceProcess({ config, dir, ...force });
      try {
        expect(forced.logs()).toMatch(/"msg":"dev mode forced"/);
        expect((await fetch(`${forced.url}/.well-known/openid-configuration`)).status).toBe(200);
      } finally {
        expect(await forced.stop()).toBe(0);
      }
    }
    // Without dev mode the same database is served as usual.
    const prod = await startServiceProcess({
      config: { ...config, providers: { corp: { issuer: "https://accounts.example", client_ids: ["app"] } } },
      dir,
    });
    expect(prod.logs()).not.toMatch(/dev mode forced/);
    await prod.stop();
  });

  it("starts as usual on loopback over a database holding only dev identities", async () => {
    const dir = newDir();
    const url = `file:${join(dir, "dev.db")}`;
    await migrate(url);
    const db = await openDatabase({ url, poolSize: 1, connectTimeoutMs: 5000, statementTimeoutMs: 5000 });
    await db.client.user.create({ data: { id: "usr_dev", username: "dev.person", createdAt: new Date() } });
    await db.client.identity.create({
      data: {
        id: "idn_dev",
        userId: "usr_dev",
        issuer: "http://127.0.0.1/dev/oidc",
        subject: "dev-1",
        provider: "dev",
      },
    });
    await db.close();
    const service = await startServiceProcess({ config: { database: { url } }, args: ["--dev"], dir });
    expect(service.logs()).not.toMatch(/dev mode forced/);
    expect(await service.stop()).toBe(0);
  });
});
