/**
 * The process: the only file that reads process.env and argv. Loads config, builds the app,
 * listens, and drains on SIGTERM/SIGINT.
 *
 * Usage: USAGE below (`node src/main.ts --help`).
 */
import { existsSync } from "node:fs";
import { constants as osConstants, userInfo } from "node:os";
import { setTimeout as delay } from "node:timers/promises";
import { parseArgs } from "node:util";
import { runAdminCli } from "./admin/cli.ts";
import { createApp } from "./app.ts";
import { createAdminTool } from "./app/admin.ts";
import { checkDevDatabase, checkDevListen, DevModeRefused } from "./app/dev-guard.ts";
import { createSupervisor, createWorkerLink, isClusterWorker, workerCount, type Supervisor } from "./app/cluster.ts";
import { ConfigError, loadConfig } from "./config/load.ts";
import type { Config } from "./config/schema.ts";
import { databaseSetting, databaseUrl, productionRefusals } from "./config/to-deps.ts";
import { createLogger, type Logger } from "./logger.ts";
import { DatabaseOpenError, dialectOf, reachDatabase } from "./store/database.ts";
import { DatabaseIntegrityError } from "./store/integrity-check.ts";
import { migrate, MigrationError } from "./store/migrate.ts";

const USAGE = `Usage:
  node src/main.ts [--dev [--force-dev]] [--config FILE]
                                                    serve (npm start: --dev; npm run start:prod: without)
  node src/main.ts migrate [--config FILE]          apply database migrations and exit (npm run db:migrate)
  node src/main.ts rotate-keys [--config FILE] [--replace-unreadable]
                                                    start signing with a new key and exit (npm run keys:rotate);
                                                    --replace-unreadable: the stored keys were sealed under a
                                                    key-encryption key that is lost; seal a new one under this one
  node src/main.ts admin <command> [--json] [--config FILE]   operators' tool (admin --help)

Options:
  --dev            development mode: built-in dev OpenID issuer at /dev/oidc (refused when NODE_ENV=production,
                   when listening beyond loopback, or on a database with identities of other providers)
  --force-dev      start dev mode despite those last two refusals (also FORCE_DEV=1)
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
  if (process.argv[2] === "admin") return runAdminTool();
  const { values, positionals } = parseCommandLine();
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values["replace-unreadable"] && positionals[0] !== "rotate-keys") {
    throw new UsageError("--replace-unreadable goes with rotate-keys");
  }
  const overrides = values.dev ? { dev: true } : {};
  const config = loadConfig({ file: configFile(values.config), env: process.env, overrides });
  // A worker of several (server.workers > 1) says which on every log line.
  const slot = worker ? Number(process.env[WORKER_SLOT]) : undefined;
  const logger = createLogger({ level: config.log_level, ...(slot === undefined ? {} : { fields: { worker: slot } }) });
  if (config.dev && process.env["NODE_ENV"] === "production") {
    throw new ConfigError("dev mode is refused when NODE_ENV=production");
  }
  if (positionals[0] === "migrate") return runMigrate(config, logger);
  if (positionals[0] === "rotate-keys") return runRotateKeys(config, logger, values["replace-unreadable"]);
  if (positionals.length > 0) throw new UsageError(`unknown command ${positionals[0]}`);
  if (slot !== undefined) return serveWorker(config, logger, slot);
  const forceDev = values["force-dev"] || ["1", "true"].includes(process.env["FORCE_DEV"] ?? "");
  return serve(config, logger, forceDev);
}

/** `admin`: the admin tool parses its own arguments; the process hands it config, identity and output. */
async function runAdminTool(): Promise<number> {
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

/** The options and the command; an unknown option is a UsageError. */
function parseCommandLine() {
  try {
    return parseArgs({
      args: process.argv.slice(2),
      options: {
        dev: { type: "boolean", default: false },
        "force-dev": { type: "boolean", default: false },
        config: { type: "string" },
        "replace-unreadable": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      allowPositionals: true,
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** `migrate`: apply the migrations and exit. */
async function runMigrate(config: Config, logger: Logger): Promise<number> {
  const url = databaseUrl(config);
  await reachDatabase(url, { ...databaseSetting(config), connectTimeoutMs: config.database.connect_timeout_ms });
  const report = await migrate(url);
  logger.info("migrations done", { applied: report.applied, already_applied: report.alreadyApplied });
  return 0;
}

/** `rotate-keys`: start signing with a new key (or replace the unreadable ones) and exit. */
async function runRotateKeys(config: Config, logger: Logger, replaceUnreadable: boolean): Promise<number> {
  const app = await createApp(config, logger, {}, { replaceUnreadableSigningKeys: replaceUnreadable });
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

/**
 * Serving: the production refusals and dev mode's guards, the app (or with `server.workers` > 1
 * the supervisor of its workers), listening, and the shutdown when a stop signal comes.
 */
async function serve(config: Config, logger: Logger, forceDev: boolean): Promise<number> {
  const refusals = config.dev ? [] : productionRefusals(config);
  if (refusals.length > 0) {
    throw new ConfigError(
      `refusing to serve in production (without --dev):\n${refusals.map((r) => `  ${r}`).join("\n")}`,
    );
  }
  // Dev mode cannot meet real data: refused beyond loopback or over other providers' identities.
  const devRefusal = async (check: () => void | Promise<void>) => {
    try {
      await check();
    } catch (e) {
      if (!(e instanceof DevModeRefused) || !forceDev) throw e;
      logger.warn("dev mode forced", { refusal: e.message });
    }
  };
  await devRefusal(() => checkDevListen(config));
  /** The app with the dev-mode database check done (closed again when it refuses). */
  const checkedApp = async () => {
    const app = await createApp(config, logger);
    try {
      await devRefusal(() => checkDevDatabase(config, app.database));
    } catch (e) {
      await app.close();
      throw e;
    }
    return app;
  };
  const workers = workerCount(config.server.workers);
  const app: Supervisor =
    workers === 1
      ? await checkedApp()
      : createSupervisor({
          workers,
          logger,
          // Once, before any worker starts: migrations, checks, the key files and the first signing key.
          prepare: async () => (await checkedApp()).close(),
          workerEnv: (n) => ({ [WORKER_SLOT]: String(n) }),
          shutdownTimeoutMs: config.server.shutdown_timeout_ms,
        });
  // Shutdown: not ready at once (load balancers and gRPC health watchers stop sending), still
  // serving for server.shutdown_delay_ms while they catch up, then drain. SIGINT (an operator at
  // a terminal) skips the delay. The handlers are in place before the port opens, so a signal
  // sent as soon as the service is up finds them.
  const stop = stopRequests(logger);
  const server = await app.listen();
  const database = dialectOf(databaseUrl(config));
  const metrics = `${app.metricsUrl()}/metrics`;
  logger.info("listening", { url: server.url, metrics, dev: config.dev, database, workers });

  const signal = await stop.first;
  app.drain();
  const delayMs = signal === "SIGTERM" && !stop.hurry.aborted ? config.server.shutdown_delay_ms : 0;
  logger.info("not ready; draining after the pre-stop delay", { signal, delay_ms: delayMs });
  if (delayMs > 0) await delay(delayMs, undefined, { signal: stop.hurry }).catch(() => {});
  logger.info("draining", { signal });
  await app.close({ hurry: stop.hurry });
  logger.info("stopped");
  return 0;
}

/**
 * A stop signal this soon after the last one counted is the same request delivered twice: Ctrl-C
 * in a terminal signals the whole foreground process group (npm and node) and npm forwards its
 * copy to node; systemd and `timeout` signal the process group likewise.
 */
const REPEAT_WINDOW_MS = 1000;

/**
 * SIGTERM/SIGINT as stop requests, repeats within REPEAT_WINDOW_MS folded into one. The first
 * request starts the shutdown (`first`); a second (a deliberate second Ctrl-C) aborts `hurry`,
 * which cuts the pre-stop delay and the drain short; a third exits at once, undrained.
 */
function stopRequests(logger: Logger): { first: Promise<NodeJS.Signals>; hurry: AbortSignal } {
  const hurry = new AbortController();
  let resolveFirst!: (signal: NodeJS.Signals) => void;
  const first = new Promise<NodeJS.Signals>((resolve) => (resolveFirst = resolve));
  let requests = 0;
  let lastCounted = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    const now = performance.now();
    if (requests > 0 && now - lastCounted < REPEAT_WINDOW_MS) {
      logger.debug("stop signal repeated: the same stop request", { signal });
      return;
    }
    requests++;
    lastCounted = now;
    if (requests === 1) resolveFirst(signal);
    else if (requests === 2) {
      logger.info("stop requested again: cutting the pre-stop delay and the drain short", { signal });
      hurry.abort();
    } else {
      logger.warn("stop requested a third time: exiting without finishing the drain", { signal });
      process.exit(128 + (osConstants.signals[signal] ?? 0));
    }
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  return { first, hurry: hurry.signal };
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
    if (e instanceof ConfigError || e instanceof MigrationError || e instanceof DevModeRefused) {
      process.stderr.write(`${e.name}: ${e.message}\n`);
      process.exit(2);
    }
    // The database cannot be reached or opened: exit 3, so a supervisor can tell it from a
    // configuration mistake (2) and a crash (1).
    if (e instanceof DatabaseOpenError) {
      process.stderr.write(`${e.name}: ${e.message}\n`);
      process.exit(3);
    }
    if (e instanceof DatabaseIntegrityError) {
      process.stderr.write(`${e.name}: ${e.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`fatal: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
