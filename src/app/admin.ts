import { existsSync } from "node:fs";
import { ConfigError } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { databaseSetting, databaseUrl, passwordExpiryPolicy } from "../config/to-deps.ts";
import { type AdminService, createAdminService } from "../core/admin.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import type { ClientInfo } from "../core/model.ts";
import type { Logger } from "../logger.ts";
import { createAdminStore } from "../store/admin-store.ts";
import { type Database, openDatabase, reachDatabase, sqlitePath } from "../store/database.ts";
import type { AdminKeyVerifier } from "../core/ports/admin.ts";
import { createAdminKeyVerifier, parseAdminKeyHash } from "../tokens/admin-keys.ts";

/**
 * The admin API's parts: the admin service, built per call for the admin key that made it (the
 * actor), and the verifier of the configured admin keys.
 */
export function createAdminApi(
  config: Config,
  deps: { database: Database; clock: Clock; logger: Logger },
): { adminFor: (actor: string, client: ClientInfo) => AdminService; adminKeys: AdminKeyVerifier } {
  const store = createAdminStore(deps.database.client);
  const expiry = passwordExpiryPolicy(config);
  const adminFor = (actor: string, client: ClientInfo) =>
    createAdminService({ clock: deps.clock, store, expiry, actor, client });
  const adminKeys = createAdminKeyVerifier(
    config.admin.api_keys.map((k) => {
      const sha256 = parseAdminKeyHash(k.sha256);
      if (sha256 === null) throw new ConfigError(`admin.api_keys: the sha256 of ${k.name} is not a SHA-256`);
      return { name: k.name, sha256 };
    }),
  );
  if (adminKeys.enabled) deps.logger.info("admin API enabled", { keys: config.admin.api_keys.map((k) => k.name) });
  return { adminFor, adminKeys };
}

export interface AdminTool {
  admin: AdminService;
  close(): Promise<void>;
}

/**
 * The admin tool's assembly: the configured database and the admin service over it, nothing that
 * listens. It never migrates (an operator's read must not change the schema) and refuses a
 * SQLite file that does not exist rather than creating an empty one.
 */
export async function createAdminTool(config: Config, options: { actor: string; clock?: Clock }): Promise<AdminTool> {
  const url = databaseUrl(config);
  await reachDatabase(url, { ...databaseSetting(config), connectTimeoutMs: config.database.connect_timeout_ms });
  if (url.startsWith("file:") && !existsSync(sqlitePath(url))) {
    throw new ConfigError(
      `no database at ${sqlitePath(url)}; check database.url / DATABASE_URL, or run \`npm run db:migrate\` first`,
    );
  }
  const database = await openDatabase({
    url,
    poolSize: 2,
    connectTimeoutMs: config.database.connect_timeout_ms,
    statementTimeoutMs: config.database.statement_timeout_ms,
    sqliteWalMaxBytes: config.database.sqlite.wal_max_bytes,
  });
  const client: ClientInfo = { ip: null, userAgent: "admin-cli", requestId: null, deviceId: null };
  const admin = createAdminService({
    clock: options.clock ?? systemClock,
    store: createAdminStore(database.client),
    expiry: passwordExpiryPolicy(config),
    actor: options.actor,
    client,
  });
  return { admin, close: () => database.close() };
}
