/**
 * The embedded setup's files hold e-mail addresses, subjects, client addresses, the audit trail
 * and the key-encryption key: only the service's user may read them.
 * The key-encryption key file is written whole or not at all.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, createApp } from "../../src/app.ts";
import { loadConfig } from "../../src/config/load.ts";
import { silentLogger } from "../../src/logger.ts";
import { devIdToken } from "../support/signin-e2e.ts";

describe("the data directory on first start", () => {
  const parent = mkdtempSync(join(tmpdir(), "identity-datadir-"));
  const dataDir = join(parent, "data");
  let app: App;

  beforeAll(async () => {
    const config = loadConfig({ env: {}, overrides: { data_dir: dataDir, "server.port": 0, dev: true } });
    app = await createApp(config, silentLogger);
    await app.listen();
    // A sign-in writes the WAL.
    const idToken = await devIdToken(app.url(), "perm");
    const r = await fetch(`${app.url()}/auth/id-token/signin`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id_token: idToken, provider: "dev" }),
    });
    expect(r.status).toBe(200);
  });
  afterAll(async () => {
    await app?.close();
    rmSync(parent, { recursive: true, force: true });
  });

  const mode = (path: string) => statSync(path).mode & 0o777;

  it("is created 0700 with the database, its WAL and the key-encryption key 0600", () => {
    expect(mode(dataDir)).toBe(0o700);
    for (const file of ["identity.db", "identity.db-wal", "identity.db-shm", "key-encryption-key"]) {
      expect([file, mode(join(dataDir, file))]).toEqual([file, 0o600]);
    }
  });

  it("writes the key-encryption key whole, with no temporary file left behind", () => {
    expect(Buffer.from(readFileSync(join(dataDir, "key-encryption-key"), "utf8").trim(), "base64")).toHaveLength(32);
    expect(readdirSync(dataDir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });
});
