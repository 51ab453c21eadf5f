import { type ChildProcess, spawn } from "node:child_process";
import { connect } from "node:net";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { stringify } from "yaml";

/** Every process below `pid` (Linux /proc), nearest first. */
function descendants(pid: number): number[] {
  let children: number[];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
  return [...children, ...children.flatMap(descendants)];
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
  } catch {
    return "";
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface NpmService {
  npm: ChildProcess;
  url: string;
  /** The node process below npm (not a `sh -c` between them). */
  server: number;
  output(): string;
  /** Resolves with npm's exit code once npm has exited. */
  exited: Promise<number | null>;
  /** Kills whatever is left (an orphan keeps its port and its CPU) and deletes the directory. */
  cleanup(): void;
}

/**
 * `npm run <script>` with a config file in a temporary directory; resolves once the server logs
 * that it listens. `detached`: npm leads a process group of its own, as a shell's foreground job
 * or a systemd unit does, so a test can signal the whole group (`process.kill(-pid)`).
 */
async function startNpm(
  script: string,
  options: { server?: Record<string, unknown>; detached?: boolean } = {},
): Promise<NpmService> {
  const dir = mkdtempSync(join(tmpdir(), "identity-npm-"));
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    stringify({
      data_dir: join(dir, "data"),
      log_level: "debug",
      // Production refuses to start without a provider; none is called here.
      providers: { acme: { issuer: "https://issuer.example", client_ids: ["app"] } },
      server: { host: "127.0.0.1", port: 0, shutdown_delay_ms: 0, ...options.server },
    }),
  );
  const npm = spawn("npm", ["run", "--silent", script], {
    env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? dir, CONFIG_FILE: file },
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.detached ?? false,
  });
  let output = "";
  npm.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  npm.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => npm.once("exit", (code) => resolve(code)));
  let server: number | undefined;
  const cleanup = () => {
    for (const pid of [
      ...(server === undefined ? [] : [server]),
      ...(npm.exitCode === null ? descendants(npm.pid!) : []),
    ]) {
      if (alive(pid)) process.kill(pid, "SIGKILL");
    }
    if (npm.exitCode === null && npm.signalCode === null) npm.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not listening:\n${output}`)), 30_000);
      const check = () => {
        // pino writes the fields in its own order: find the line, then its url.
        const line = output.split("\n").find((l) => l.includes('"msg":"listening"'));
        const m = line === undefined ? null : /"url":"([^"]+)"/.exec(line);
        if (m !== null) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      };
      npm.stdout!.on("data", check);
      npm.once("exit", () => reject(new Error(`npm exited:\n${output}`)));
    });
    server = descendants(npm.pid!).find((pid) => /^\S*node src\/main\.ts/.test(commandLine(pid)));
    expect(server, `no server process below npm (${npm.pid})`).toBeDefined();
    return { npm, url, server: server!, output: () => output, exited, cleanup };
  } catch (e) {
    cleanup();
    throw e;
  }
}

/**
 * An HTTP/1.1 request whose body has not arrived in full, which holds a drain open; `finish`
 * sends the rest and resolves with the answer's status line.
 */
async function openRequest(url: string): Promise<{ finish(): Promise<string>; destroy(): void }> {
  const socket = connect(Number(new URL(url).port), "127.0.0.1");
  socket.on("error", () => {});
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  const body = JSON.stringify({ id_token: "not-a-token", provider: "dev" });
  socket.write(
    `POST /auth/id-token/signin HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body[0]}`,
  );
  let answer = "";
  socket.on("data", (d: Buffer) => (answer += d.toString()));
  return {
    finish: async () => {
      socket.write(body.slice(1));
      for (let i = 0; i < 100 && !answer.includes("\r\n"); i++) await new Promise((r) => setTimeout(r, 50));
      return answer.split("\r\n")[0]!;
    },
    destroy: () => socket.destroy(),
  };
}

const logLines = (output: string, msg: string) => output.split("\n").filter((l) => l.includes(`"msg":"${msg}"`));

/**
 * `npm start` / `npm run start:prod` under a supervisor: the supervisor signals npm, and the
 * server must get the SIGTERM, drain and exit, rather than being left serving when npm goes
 * (which it was when npm's `sh -c` stood between them; the scripts now `exec` node).
 */
describe.runIf(process.platform === "linux")("npm start passes SIGTERM to the server", () => {
  for (const script of ["start", "start:prod"]) {
    it(`npm run ${script}: SIGTERM to npm stops the server and closes the port`, async () => {
      const service = await startNpm(script);
      try {
        expect((await fetch(`${service.url}/healthz`)).status).toBe(200);
        service.npm.kill("SIGTERM");
        await service.exited;
        for (let i = 0; i < 50 && alive(service.server); i++) await new Promise((r) => setTimeout(r, 100));
        expect(alive(service.server), "the server outlived npm").toBe(false);
        await expect(fetch(`${service.url}/healthz`)).rejects.toThrow();
        expect(logLines(service.output(), "draining").some((l) => l.includes('"signal":"SIGTERM"'))).toBe(true);
        expect(service.output()).toContain('"msg":"stopped"');
      } finally {
        service.cleanup();
      }
    });
  }
});

/**
 * A signal to the whole process group reaches node twice: once itself, once forwarded by npm.
 * Ctrl-C in a terminal is such a signal (SIGINT to the foreground job), and so is systemd's or
 * `timeout`'s SIGTERM. The repeat is the same request: before, the second SIGINT found no handler
 * and killed node with 130 before it drained, and a second SIGTERM skipped the pre-stop delay.
 */
describe.runIf(process.platform === "linux")("npm start: one stop request per signal to the process group", () => {
  it("Ctrl-C (SIGINT to the group): counted once, drains (the open request is answered), logs stopped, exits 0", async () => {
    const service = await startNpm("start", { detached: true, server: { shutdown_timeout_ms: 60_000 } });
    // An open request keeps node draining while npm's copy of the signal arrives.
    const request = await openRequest(service.url);
    try {
      await new Promise((r) => setTimeout(r, 200));
      process.kill(-service.npm.pid!, "SIGINT");
      await new Promise((r) => setTimeout(r, 700));
      expect(service.npm.exitCode, service.output()).toBeNull();
      expect(await request.finish()).toBe("HTTP/1.1 400 Bad Request");
      expect(await service.exited, service.output()).toBe(0);
      const output = service.output();
      expect(output).toContain('"msg":"stopped"');
      // Node saw the signal once or twice (its own, and npm's copy unless node had finished by
      // the time npm forwarded it) and counted it once: no hurry, no kill.
      expect(logLines(output, "stop signal repeated: the same stop request").length).toBeLessThanOrEqual(1);
      expect(output).not.toContain("cutting the pre-stop delay");
    } finally {
      request.destroy();
      service.cleanup();
    }
  });

  it("SIGTERM to the group: the pre-stop delay is honoured (not ready, still serving), then exit 0", async () => {
    const delayMs = 2000;
    const service = await startNpm("start", { detached: true, server: { shutdown_delay_ms: delayMs } });
    try {
      expect((await fetch(`${service.url}/readyz`)).status).toBe(200);
      const sent = performance.now();
      process.kill(-service.npm.pid!, "SIGTERM");
      // Within the delay: not ready, yet still answering.
      let ready = 200;
      while (ready === 200 && performance.now() - sent < delayMs / 2) {
        ready = (await fetch(`${service.url}/readyz`)).status;
      }
      expect(ready).toBe(503);
      expect((await fetch(`${service.url}/healthz`)).status).toBe(200);
      expect(await service.exited, service.output()).toBe(0);
      expect(performance.now() - sent).toBeGreaterThanOrEqual(delayMs);
      const output = service.output();
      expect(logLines(output, "not ready; draining after the pre-stop delay")[0]).toContain(`"delay_ms":${delayMs}`);
      expect(output).toContain('"msg":"stopped"');
      expect(output).not.toContain("cutting the pre-stop delay");
    } finally {
      service.cleanup();
    }
  });

  it("a deliberate second Ctrl-C, after a moment, cuts the drain short; still stopped and exit 0", async () => {
    const service = await startNpm("start", { detached: true, server: { shutdown_timeout_ms: 60_000 } });
    // A request that never finishes arriving holds the drain open (up to shutdown_timeout_ms).
    const request = await openRequest(service.url);
    try {
      await new Promise((r) => setTimeout(r, 200));
      process.kill(-service.npm.pid!, "SIGINT");
      for (let i = 0; i < 50 && logLines(service.output(), "draining").length === 0; i++)
        await new Promise((r) => setTimeout(r, 100));
      expect(logLines(service.output(), "draining")).toHaveLength(1);
      await new Promise((r) => setTimeout(r, 1500));
      expect(service.npm.exitCode, "the open request should hold the drain").toBeNull();
      const second = performance.now();
      process.kill(-service.npm.pid!, "SIGINT");
      expect(await service.exited, service.output()).toBe(0);
      expect(performance.now() - second).toBeLessThan(10_000);
      const output = service.output();
      expect(logLines(output, "stop requested again: cutting the pre-stop delay and the drain short")).toHaveLength(1);
      expect(output).toContain('"msg":"stopped"');
    } finally {
      request.destroy();
      service.cleanup();
    }
  });
});
