import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { stringify } from "yaml";

/** Every process below `pid` (Linux /proc), nearest first. */
function descendants(pid: number): number[] {
  let children: number[];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
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

/**
 * `npm start` / `npm run start:prod` under a supervisor: the supervisor signals npm, and the
 * server must get the SIGTERM, drain and exit, rather than being left serving when npm goes
 * (which it was when npm's `sh -c` stood between them; the scripts now `exec` node).
 */
describe.runIf(process.platform === "linux")("npm start passes SIGTERM to the server", () => {
  for (const script of ["start", "start:prod"]) {
    it(`npm run ${script}: SIGTERM to npm stops the server and closes the port`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "identity-npm-"));
      const file = join(dir, "config.yaml");
      writeFileSync(file, stringify({ data_dir: join(dir, "data"), server: { host: "127.0.0.1", port: 0, shutdown_delay_ms: 0 } }));
      const npm = spawn("npm", ["run", "--silent", script], {
        env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? dir, CONFIG_FILE: file },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let output = "";
      npm.stdout.on("data", (d: Buffer) => (output += d.toString()));
      npm.stderr.on("data", (d: Buffer) => (output += d.toString()));
      const npmExited = new Promise<void>((resolve) => npm.once("exit", () => resolve()));
      let server: number | undefined;
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
          npm.stdout.on("data", check);
          npm.once("exit", () => reject(new Error(`npm exited:\n${output}`)));
        });
        // The node process itself (not a `sh -c "node src/main.ts"` between npm and it).
        server = descendants(npm.pid!).find((pid) => /^\S*node src\/main\.ts/.test(commandLine(pid)));
        expect(server, `no server process below npm (${npm.pid})`).toBeDefined();
        expect((await fetch(`${url}/healthz`)).status).toBe(200);

        npm.kill("SIGTERM");
        await npmExited;
        for (let i = 0; i < 50 && alive(server!); i++) await new Promise((r) => setTimeout(r, 100));
        expect(alive(server!), "the server outlived npm").toBe(false);
        await expect(fetch(`${url}/healthz`)).rejects.toThrow();
        expect(output.split("\n").some((l) => l.includes('"msg":"draining"') && l.includes('"signal":"SIGTERM"'))).toBe(true);
        expect(output).toContain('"msg":"stopped"');
      } finally {
        // Whatever happened, leave no server behind (an orphan keeps its port and its CPU).
        for (const pid of [...(server === undefined ? [] : [server]), ...(npm.exitCode === null ? descendants(npm.pid!) : [])]) {
          if (alive(pid)) process.kill(pid, "SIGKILL");
        }
        if (npm.exitCode === null && npm.signalCode === null) npm.kill("SIGKILL");
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
