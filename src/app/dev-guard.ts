import { BlockList, isIP } from "node:net";
import type { Config } from "../config/schema.ts";
import type { Database } from "../store/database.ts";

/**
 * Dev mode cannot meet real data (issue 18, item 9). Its built-in issuer mints an ID token for
 * any subject and any verified e-mail, so a dev-mode server reachable from elsewhere, or over a
 * database with real users, hands out their accounts (by e-mail link, or by a second factor
 * skipped through trust). It refuses both, unless the operator forces it (`--force-dev`, or
 * FORCE_DEV=1), which is logged as a warning.
 */
export class DevModeRefused extends Error {
  override readonly name = "DevModeRefused";
}

const FORCE = "start with --force-dev (or FORCE_DEV=1) only if you really mean it";

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");
LOOPBACK.addSubnet("::ffff:127.0.0.0", 104, "ipv6");

/** Whether `host` can only be reached from this machine: 127.0.0.0/8, ::1, or `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[|\]$/g, "");
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  const version = isIP(h);
  return version !== 0 && LOOPBACK.check(h, version === 4 ? "ipv4" : "ipv6");
}

/** Refuses a dev-mode listen address beyond loopback (before anything is opened). */
export function checkDevListen(config: Config): void {
  if (!config.dev || isLoopbackHost(config.server.host)) return;
  throw new DevModeRefused(
    `dev mode refuses to listen on ${config.server.host}: its built-in issuer mints ID tokens for anyone, so it must stay on ` +
      `loopback (server.host / HOST: 127.0.0.1, ::1 or localhost); ${FORCE}`,
  );
}

/** Refuses a dev-mode start on a database that holds identities of providers other than `dev`. */
export async function checkDevDatabase(config: Config, database: Database): Promise<void> {
  if (!config.dev) return;
  const rows = await database.client.identity.groupBy({
    by: ["provider"],
    where: { provider: { not: "dev" } },
    _count: { _all: true },
    orderBy: { provider: "asc" },
    take: 5,
  });
  if (rows.length === 0) return;
  const held = rows.map((r) => `${r.provider}: ${r._count._all}`).join(", ");
  throw new DevModeRefused(
    `dev mode refuses to start on a database with identities of other providers (${held}): its built-in issuer could ` +
      `sign in as their users (a verified e-mail links to an existing account). Use a database of its own for dev ` +
      `(data_dir / database.url); ${FORCE}`,
  );
}
