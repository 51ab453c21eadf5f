import { type ChildProcess, spawn, spawnSync, type SpawnSyncReturns } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";

export interface ServiceProcess {
  url: string;
  child: ChildProcess;
  /** Everything the process logged so far (JSON lines). */
  logs(): string;
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Starts the real service (`node src/main.ts`) as a child process with a YAML config file and
 * environment, on port 0, and resolves once it logs that it is listening.
 *
 * The config file and the data dir (`<dir>/data`: SQLite database, key-encryption key) live in a
 * temporary directory that `stop()` deletes; pass `dir` to use a directory of your own instead,
 * which `stop()` leaves alone, so a later process can be started on the same data (a restart).
 */
export async function startServiceProcess(options: {
  config: Record<string, unknown>;
  env?: Record<string, string>;
  args?: string[];
  dir?: string;
}): Promise<ServiceProcess> {
  const owned = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "identity-proc-"));
  if (!owned) mkdirSync(dir, { recursive: true });
  const cleanup = () => {
    if (owned) rmSync(dir, { recursive: true, force: true });
  };
  const file = join(dir, "config.yaml");
  // No pre-stop delay unless a test asks for one: stop() should not wait for load balancers.
  const server = { shutdown_delay_ms: 0, ...(options.config["server"] as Record<string, unknown> | undefined) };
  writeFileSync(file, stringify({ data_dir: join(dir, "data"), log_level: "info", ...options.config, server }));
  const child = spawn(process.execPath, ["src/main.ts", "--config", file, ...(options.args ?? [])], {
    env: { PATH: process.env["PATH"] ?? "", PORT: "0", HOST: "127.0.0.1", ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`service did not start:\n${output}`)), 30_000);
    const check = () => {
      const m = /"url":"([^"]+)"[^\n]*"msg":"listening"/.exec(output);
      if (m !== null) {
        clearTimeout(timer);
        child.stdout!.off("data", check);
        resolve(m[1]!);
      }
    };
    child.stdout!.on("data", check);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`service exited with ${code}:\n${output}`));
    });
  });
  return {
    url,
    child,
    logs: () => output,
    stop: () =>
      new Promise((resolve) => {
        // Already gone (exited, or killed by a signal such as SIGKILL): nothing to wait for.
        if (child.exitCode !== null || child.signalCode !== null) {
          cleanup();
          resolve(child.exitCode);
          return;
        }
        child.once("exit", (code) => {
          cleanup();
          resolve(code);
        });
        child.kill("SIGTERM");
      }),
  };
}

/**
 * A TCP port free right now on 127.0.0.1, for a process that must keep its address across a
 * restart (our issuer URL carries the port when server.public_url is unset).
 */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The service's entry point, absolute, so a process can run it from another working directory. */
export const MAIN = fileURLToPath(new URL("../../src/main.ts", import.meta.url));

/**
 * Runs `node src/main.ts ARGS` to the end (a command, or a start that is refused) with only PATH
 * and `env` in its environment, in `cwd` (default: the repository); stdout and stderr as text.
 */
export function runMain(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [MAIN, ...args], {
    env: { PATH: process.env["PATH"] ?? "", ...options.env },
    cwd: options.cwd,
    encoding: "utf8",
    timeout: options.timeoutMs ?? 30_000,
  });
}
