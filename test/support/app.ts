import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type App, type AppOverrides, createApp } from "../../src/app.ts";
import { loadConfig } from "../../src/config/load.ts";
import { type Logger, silentLogger } from "../../src/logger.ts";
import { type TestDatabase, type TestDatabaseKind, sqliteKind } from "./databases.ts";

export interface TestApp {
  app: App;
  url: string;
  database: TestDatabase;
  close(): Promise<void>;
}

/**
 * A real server on 127.0.0.1 port 0 over a fresh database (SQLite unless `kind` says otherwise),
 * built by the same createApp as production, with `config` merged over test defaults.
 */
export async function startTestApp(
  options: {
    config?: Record<string, unknown>;
    kind?: TestDatabaseKind;
    overrides?: AppOverrides;
    logger?: Logger;
  } = {},
): Promise<TestApp> {
  const database = await (options.kind ?? sqliteKind).create();
  const dataDir = mkdtempSync(join(tmpdir(), "identity-data-"));
  const config = loadConfig({
    env: {},
    overrides: {
      data_dir: dataDir,
      "server.port": 0,
      "server.host": "127.0.0.1",
      "database.url": database.url,
      "tokens.issuer": "https://identity.test",
      "tokens.key_encryption_key": Buffer.alloc(32, 7).toString("base64"),
      // Suites make many refused sign-ins from 127.0.0.1; the limit has its own test.
      "rate_limit.signin_failures_per_ip": 0,
      ...options.config,
    },
  });
  const app = await createApp(config, options.logger ?? silentLogger, options.overrides);
  const server = await app.listen();
  return {
    app,
    url: server.url,
    database,
    async close() {
      await app.close();
      await database.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
