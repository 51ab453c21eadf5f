/**
 * The process: the only file that reads process.env and argv. Loads config, builds the app,
 * listens, and drains on SIGTERM/SIGINT.
 *
 * Usage: USAGE below (`node src/main.ts --help`).
 */
import { existsSync } from "node:fs";
import { userInfo } from "node:os";
import { parseArgs } from "node:util";
import { runAdminCli } from "./admin/cli.ts";
import { createApp } from "./app.ts";
import { createAdminTool } from "./app/admin.ts";
import { createSupervisor, createWorkerLink, isClusterWorker, workerCount } from "./app/cluster.ts";
import { ConfigError, loadConfig } from "./config/load.ts";
import type { Config } from "./config/schema.ts";
import { databaseUrl } from "./config/to-deps.ts";
import { createLogger, type Logger } from "./logger.ts";
import { dialectOf } from "./store/database.ts";
import { DatabaseIntegrityError } from "./store/integrity-check.ts";
import { migrate, MigrationError } from "./store/migrate.ts";

const USAGE = `Usage:
  node src/main.ts [--dev] [--config FILE]          serve (npm start: --dev; npm run start:prod: without)
  node src/main.ts migrate [--config FILE]          apply database migrations and exit (npm run db:migrate)
  node src/main.ts rotate-keys [--config FILE] [--replace-unreadable]
                                                    start signing with a new key and exit (npm run keys:rotate);
                                                    --replace-unreadable: the stored keys were sealed under a
                                                    key-encryption key that is lost; seal a new one under this one
  node src/main.ts admin <command> [--json] [--config FILE]   operators' tool (admin --help)

Options:
  --dev            development mode: built-in dev OpenID issuer at /dev/oidc (refused when NODE_ENV=production)
  --config FILE    YAML or JSON configuration (default: CONFIG_FILE, else ./config.yaml when present);
                   config.example.yaml documents every key and the environment variables that override them
  -h, --help       this text
`;

/** --config, else CONFIG_FILE, else ./config.yaml when present. */
function configFile(flag: string | undefined): string | undefined {
  return flag ?? process.env["CONFIG_FILE"] ?? (existsSync("config.yaml") ? "config.yaml" : undefined);
}

async function main(): Promise<number> {
  const worker = isClusterWorker();
  if (process.argv[2] === "admin") {
    // The admin tool parses its own arguments; the process hands it config, identity and output.
    const actor = process.env["SUDO_USER"] ?? safeUserName();
    const code = await runAdminCli(process.argv.slice(3), {
      stdout: (text) => process.stdout.write(text),
      stderr: (text) => process.stderr.write(text),
      now: () => new Date(),
      open: async (flag) => createAdminTool(loadConfig({ file: configFile(flag), env: process.env }), { actor }),
    });
    // Let piped output drain before process.exit.
    await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
    return code;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: process.argv.slice(2),
      options: {
        dev: { type: "boolean", default: false },
        config: { type: "string" },
        "replace-unreadable": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      allowPositionals: true,
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values["replace-unreadable"] && positionals[0] !== "rotate-keys") throw new UsageError("--replace-unreadable goes with rotate-keys");
  const config = loadConfig({ file: configFile(values.config), env: process.env, overrides: values.dev ? { dev: true } : {} });
  // A worker of several (server.workers > 1) says which on every log line.
  const slot = worker ? Number(process.env[WORKER_SLOT]) : undefined;
  const logger = createLogger({ level: config.log_level, ...(slot === undefined ? {} : { fields: { worker: slot } }) });
  if (config.dev && process.env["NODE_ENV"] === "production") {
    throw new ConfigError("dev mode is refused when NODE_ENV=production");
  }

  if (positionals[0] === "migrate") {
    const report = await migrate(databaseUrl(config));
    logger.info("migrations done", { applied: report.applied, already_applied: report.alreadyApplied });
    return 0;
  }
  if (positionals[0] === "rotate-keys") {
    const app = await createApp(config, logger, {}, { replaceUnreadableSigningKeys: values["replace-unreadable"] });
    const unreadable = app.keyRing.replacedUnreadable();
    const before = app.keyRing.activeKid();
    // A replaced unreadable key was the rotation already.
    const kid = unreadable.length > 0 ? before : await app.keyRing.rotate();
    logger.info("signing key rotated", {
      retired: unreadable.length > 0 ? unreadable : before,
      active: kid,
      published: app.keyRing.jwks().keys.length,
    });
    await app.close();
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`unknown command ${positionals[0]}`);

  if (slot !== undefined) return serveWorker(config, logger, slot);
  const workers = workerCount(config.server.workers);
  const app = workers === 1
    ? await createApp(config, logger)
    : createSupervisor({
        workers,
        logger,
        // Once, before any worker starts: migrations, checks, the key files and the first signing key.
        prepare: async () => (await createApp(config, logger)).close(),
        workerEnv: (n) => ({ [WORKER_SLOT]: String(n) }),
        shutdownTimeoutMs: config.server.shutdown_timeout_ms,
      });
  // Shutdown: not ready at once (load balancers and gRPC health watchers stop sending), still
  // serving for server.shutdown_delay_ms while they catch up, then drain. SIGINT (an operator at
  // a terminal) skips the delay, and a second signal cuts it short. The handlers are in place
  // before the port opens, so a signal sent as soon as the service is up finds them.
  const stopSignal = new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  const server = await app.listen();
  logger.info("listening", { url: server.url, metrics: `${app.metricsUrl()}/metrics`, dev: config.dev, database: dialectOf(databaseUrl(config)), workers });

  const signal = await stopSignal;
  app.drain();
  const delayMs = signal === "SIGTERM" ? config.server.shutdown_delay_ms : 0;
  logger.info("not ready; draining after the pre-stop delay", { signal, delay_ms: delayMs });
  if (delayMs > 0) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, delayMs);
      const hurry = () => {
        clearTimeout(timer);
        resolve();
      };
      process.once("SIGTERM", hurry);
      process.once("SIGINT", hurry);
    });
  }
  logger.info("draining", { signal });
  await app.close();
  logger.info("stopped");
  return 0;
}

/** The environment variable that tells a worker process its slot (set by the supervisor). */
const WORKER_SLOT = "IDENTITY_WORKER_SLOT";

/**
 * One worker of several (app/cluster.ts): a full replica without the once-only start-up work
 * (the supervisor did it), answering the supervisor until it says close.
 */
async function serveWorker(config: Config, logger: Logger, slot: number): Promise<number> {
  const link = createWorkerLink(slot);
  const app = await createApp(
    { ...config, database: { ...config.database, migrate_on_start: false, quick_check_on_start: false } },
    logger,
    {},
    { cluster: link.peer },
  );
  const server = await app.listen();
  logger.info("worker serving", { url: server.url });
  await link.serve({
    url: app.url,
    metricsUrl: app.metricsUrl,
    localMetrics: app.localMetrics,
    localReadiness: async () => {
      const r = await app.readiness.check();
      return r.ready ? null : r.reason;
    },
    drain: app.drain,
    close: app.close,
  });
  logger.info("stopped");
  return 0;
}

/** A command line that cannot be run: said in one line with the usage, never a stack trace. */
class UsageError extends Error {
  override readonly name = "UsageError";
}

function safeUserName(): string {
  try {
    return userInfo().username;
  } catch {
    return "unknown";
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof UsageError) {
      process.stderr.write(`${e.message}\n\n${USAGE}`);
      process.exit(2);
    }
    if (e instanceof ConfigError || e instanceof MigrationError) {
      process.stderr.write(`${e.name}: ${e.message}\n`);
      process.exit(2);
    }
    if (e instanceof DatabaseIntegrityError) {
      process.stderr.write(`${e.name}: ${e.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`fatal: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
