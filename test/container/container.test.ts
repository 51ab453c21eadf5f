import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { request } from "node:http";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { postgresKind, type TestDatabase } from "../support/databases.ts";
import { startTestOidcProvider, type TestOidcProvider } from "../support/oidc-provider.ts";
import { freePort } from "../support/service-process.ts";

/**
 * The image (Containerfile), run as operators run it: podman, a read-only root filesystem, the
 * image's own user, node as PID 1 receiving SIGTERM. `.ci/container.sh` (npm run test:container)
 * builds the image and names it in CONTAINER_IMAGE; without it this file fails rather than skips.
 *
 * `--network host`: the containers reach the test's OpenID provider and PostgreSQL on 127.0.0.1,
 * so the provider's issuer URL is the same inside and outside; each container gets a port of its
 * own through PORT.
 */
const IMAGE = process.env["CONTAINER_IMAGE"] ?? "";
const PODMAN = ["--storage-driver", "vfs", "--runtime", "runc"];
// crun fails on this kernel's hybrid cgroups (runc it is), and the limits must be explicit.
// The HEALTHCHECK's timer needs systemd, which is not here: the test runs the check itself.
const RUN = [
  "run",
  "--rm",
  "--network",
  "host",
  "--ulimit",
  "nofile=20000:20000",
  "--ulimit",
  "nproc=1000:1000",
  "--read-only",
  "--health-interval",
  "disable",
];
const ISSUER = "https://identity.test";

function podman(args: string[], timeoutMs = 60_000) {
  const r = spawnSync("podman", [...PODMAN, ...args], { encoding: "utf8", timeout: timeoutMs });
  return { code: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

interface Container {
  name: string;
  url: string;
  child: ChildProcess;
  logs(): string;
  exited: Promise<number | null>;
  /** Runs `node -e SCRIPT` inside; its stdout. */
  node(script: string): string;
}

const dir = mkdtempSync(join(tmpdir(), "identity-container-"));
chmodSync(dir, 0o755);
const started: Container[] = [];
const volumes: string[] = [];
let op: TestOidcProvider;

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text, { mode: 0o444 });
  return path;
}

/** The config file every container mounts: the test provider, our issuer, a short pre-stop delay. */
function configFile(server: Record<string, unknown> = {}): string {
  return file(
    `config-${randomBytes(4).toString("hex")}.yaml`,
    stringify({
      tokens: { issuer: ISSUER },
      providers: { acme: { issuer: op.issuer, client_ids: [op.clientId] } },
      server: { shutdown_delay_ms: 0, ...server },
    }),
  );
}

/** `podman run` in the foreground (its output is the container's); resolves once it listens. */
async function startContainer(options: {
  args?: string[];
  env?: Record<string, string>;
  mounts?: string[];
  config?: string;
  cmd?: string[];
}): Promise<Container> {
  const name = `idtoken-test-${randomBytes(4).toString("hex")}`;
  const port = await freePort();
  const env = { PORT: String(port), CONFIG_FILE: "/etc/idtoken-signin/config.yaml", ...options.env };
  const args = [
    ...PODMAN,
    ...RUN,
    "--name",
    name,
    ...Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]),
    "-v",
    `${options.config ?? configFile()}:/etc/idtoken-signin/config.yaml:ro`,
    ...(options.mounts ?? []).flatMap((m) => ["-v", m]),
    ...(options.args ?? []),
    IMAGE,
    ...(options.cmd ?? []),
  ];
  const child = spawn("podman", args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const container: Container = {
    name,
    url: `http://127.0.0.1:${port}`,
    child,
    logs: () => output,
    exited,
    node: (script) => {
      const r = podman(["exec", name, "node", "-e", script]);
      if (r.code !== 0) throw new Error(`podman exec ${name} failed (${r.code}): ${r.stderr}`);
      return r.stdout.trim();
    },
  };
  started.push(container);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`container did not start:\n${output}`)), 90_000);
    const check = () => {
      if (/"msg":"listening"/.test(output)) {
        clearTimeout(timer);
        child.stdout!.off("data", check);
        resolve();
      }
    };
    child.stdout!.on("data", check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`container exited with ${code}:\n${output}`));
    });
  });
  return container;
}

/** SIGTERM to PID 1 (what `podman stop`, Docker and the kubelet send); resolves with the exit code. */
async function sigterm(c: Container): Promise<number | null> {
  expect(podman(["kill", "--signal", "TERM", c.name]).code).toBe(0);
  return c.exited;
}

const post = async (url: string, path: string, body: unknown, headers: Record<string, string> = {}) => {
  const res = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, string> };
};
async function signin(url: string, sub: string) {
  const { idToken } = await op.obtainIdToken({ sub });
  const r = await post(url, "/auth/id-token/signin", { id_token: idToken, provider: "acme" });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body as { user_id: string; access_token: string; refresh_token: string };
}
const kids = async (url: string) =>
  ((await (await fetch(`${url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }).keys
    .map((k) => k.kid)
    .sort();
const me = async (url: string, accessToken: string) => {
  const res = await fetch(`${url}/auth/me`, { headers: { authorization: `Bearer ${accessToken}` } });
  return { status: res.status, body: (await res.json()) as { id?: string } };
};

beforeAll(async () => {
  op = await startTestOidcProvider();
});

afterAll(async () => {
  for (const c of started) if (c.child.exitCode === null && c.child.signalCode === null) podman(["kill", c.name]);
  await Promise.all(started.map((c) => c.exited));
  for (const v of volumes) podman(["volume", "rm", "--force", v]);
  await op?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the image", () => {
  it("is named by CONTAINER_IMAGE (npm run test:container builds it)", () => {
    expect(IMAGE, "CONTAINER_IMAGE is not set: run `npm run test:container`, which builds the image first").not.toBe(
      "",
    );
    expect(podman(["image", "exists", IMAGE]).code, `no image ${IMAGE}`).toBe(0);
  });

  it("carries OCI labels, a HEALTHCHECK, a non-root user and node src/main.ts as its entry point", () => {
    const inspect = JSON.parse(podman(["image", "inspect", IMAGE]).stdout)[0] as {
      Labels: Record<string, string>;
      Config: { User: string; Entrypoint: string[]; Env: string[] };
      Healthcheck?: { Test: string[] };
    };
    expect(inspect.Labels["org.opencontainers.image.title"]).toBe("idtoken-signin");
    expect(inspect.Labels["org.opencontainers.image.version"]).toMatch(/^\d+\.\d+\.\d+/);
    expect(inspect.Labels["org.opencontainers.image.revision"]).toMatch(/^[0-9a-f]{40}$/);
    expect(inspect.Config.User).toBe("10001:10001");
    expect(inspect.Config.Entrypoint).toEqual(["node", "src/main.ts"]);
    expect(inspect.Config.Env).toEqual(expect.arrayContaining(["NODE_ENV=production", "DATA_DIR=/data"]));
    expect(inspect.Healthcheck?.Test.join(" ")).toContain("/readyz");
  });
});

describe("one container on a SQLite data volume", () => {
  let volume: string;
  let first: Container;
  let user: { user_id: string; access_token: string; refresh_token: string };
  let firstKids: string[];

  beforeAll(async () => {
    volume = `idtoken-test-data-${randomBytes(4).toString("hex")}`;
    volumes.push(volume);
    expect(podman(["volume", "create", volume]).code).toBe(0);
    first = await startContainer({ mounts: [`${volume}:/data`] });
  }, 120_000);

  it("signs a user in, and is ready and healthy", async () => {
    user = await signin(first.url, "container-alice");
    expect((await me(first.url, user.access_token)).body.id).toBe(user.user_id);
    expect((await fetch(`${first.url}/readyz`)).status).toBe(200);
    expect((await fetch(`${first.url}/healthz`)).status).toBe(200);
    // The image's HEALTHCHECK, as Docker and podman run it.
    expect(podman(["healthcheck", "run", first.name]).code).toBe(0);
    firstKids = await kids(first.url);
    expect(firstKids.length).toBeGreaterThan(0);
  });

  it("runs node as PID 1, not as root, on a read-only root filesystem; only /data is written", () => {
    const facts = JSON.parse(
      first.node(`
        const fs = require("fs");
        const tryWrite = (p) => { try { fs.writeFileSync(p, "x"); fs.rmSync(p); return "written"; } catch (e) { return e.code; } };
        console.log(JSON.stringify({
          uid: process.getuid(), gid: process.getgid(),
          pid1: fs.readFileSync("/proc/1/cmdline", "utf8").split("\\0").filter(Boolean),
          pid1Uid: /^Uid:\\s+(\\d+)/m.exec(fs.readFileSync("/proc/1/status", "utf8"))[1],
          app: tryWrite("/app/src/x"), etc: tryWrite("/etc/x"), data: tryWrite("/data/x"),
          dataFiles: fs.readdirSync("/data").sort(),
        }));`),
    ) as Record<string, unknown>;
    expect(facts).toMatchObject({
      uid: 10001,
      gid: 10001,
      pid1: ["node", "src/main.ts"],
      pid1Uid: "10001",
      app: "EROFS",
      etc: "EROFS",
      data: "written",
    });
    expect(facts["dataFiles"]).toEqual(expect.arrayContaining(["key-encryption-key"]));
    expect(podman(["inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", first.name]).stdout.trim()).toBe("true");
  });

  it("has no dev issuer", async () => {
    expect((await fetch(`${first.url}/dev/oidc/.well-known/openid-configuration`)).status).toBe(404);
    expect(first.logs()).toContain('"dev":false');
  });

  it("restarted on the same volume: the same user and the same signing key", async () => {
    expect(await sigterm(first)).toBe(0);
    expect(first.logs()).toContain('"msg":"stopped"');
    const second = await startContainer({ mounts: [`${volume}:/data`] });
    expect(await kids(second.url)).toEqual(firstKids);
    // The access token signed before the restart still verifies, and the user signs in again as itself.
    expect((await me(second.url, user.access_token)).body.id).toBe(user.user_id);
    expect((await signin(second.url, "container-alice")).user_id).toBe(user.user_id);
    const refreshed = await post(second.url, "/auth/token/refresh", { refresh_token: user.refresh_token });
    expect(refreshed.status).toBe(200);
    expect(await sigterm(second)).toBe(0);
  });

  it("starts the dev issuer only when asked for (--dev, with NODE_ENV unset, on loopback)", async () => {
    const refused = podman([...RUN, IMAGE, "--dev"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("dev mode is refused when NODE_ENV=production");
    // The image listens on 0.0.0.0: dev mode's issuer mints ID tokens for anyone, so it refuses that.
    const exposed = podman([...RUN, "-e", "NODE_ENV=", IMAGE, "--dev"]);
    expect(exposed.code).toBe(2);
    expect(exposed.stderr).toContain("DevModeRefused: dev mode refuses to listen on 0.0.0.0");
    // Its data (the dev issuer's key) goes to the anonymous volume the image's VOLUME /data makes.
    const dev = await startContainer({ env: { NODE_ENV: "", HOST: "127.0.0.1" }, cmd: ["--dev"] });
    expect((await fetch(`${dev.url}/dev/oidc/.well-known/openid-configuration`)).status).toBe(200);
    expect(await sigterm(dev)).toBe(0);
  }, 240_000); // three containers one after the other: 98.5 and 106.7 s in CI runs beside `npm test`
});

const pgKind = postgresKind();

describe("two containers on one PostgreSQL", () => {
  let db: TestDatabase;
  let replicas: Container[];
  const delayMs = 1500;

  beforeAll(async () => {
    if (pgKind === null) throw new Error('TEST_DATABASE_URL is not set: eval "$(bash .ci/postgres.sh start)" first');
    db = await pgKind.create();
    const kek = file("kek", Buffer.alloc(32, 9).toString("base64"));
    const env = {
      DATABASE_URL: db.url,
      KEY_ENCRYPTION_KEY_FILE: "/run/secrets/kek",
      MIGRATE_ON_START: "false",
      DATA_DIR: "",
    };
    // Migrations once, as the compose file's and the Kubernetes Job do.
    const migrate = podman([...RUN, "-e", `DATABASE_URL=${db.url}`, IMAGE, "migrate"], 120_000);
    expect(migrate.code, migrate.stdout + migrate.stderr).toBe(0);
    expect(migrate.stdout).toContain('"msg":"migrations done"');
    const config = configFile({ shutdown_delay_ms: delayMs, shutdown_timeout_ms: 10_000 });
    const mounts = [`${kek}:/run/secrets/kek:ro`];
    replicas = await Promise.all([startContainer({ env, mounts, config }), startContainer({ env, mounts, config })]);
  }, 180_000);

  afterAll(async () => {
    await db?.drop();
  });

  it("signs in through both and refreshes through the other", async () => {
    const [a, b] = replicas as [Container, Container];
    const viaA = await signin(a.url, "container-pg-bob");
    const viaB = await signin(b.url, "container-pg-bob");
    expect(viaB.user_id).toBe(viaA.user_id);
    const refreshedOnB = await post(b.url, "/auth/token/refresh", { refresh_token: viaA.refresh_token });
    expect(refreshedOnB.status).toBe(200);
    const refreshedOnA = await post(a.url, "/auth/token/refresh", { refresh_token: viaB.refresh_token });
    expect(refreshedOnA.status).toBe(200);
    expect((await me(a.url, refreshedOnB.body["access_token"]!)).body.id).toBe(viaA.user_id);
    expect(await kids(a.url)).toEqual(await kids(b.url));
    for (const c of replicas) expect(c.logs()).toContain('"database":"postgresql"');
  });

  it("SIGTERM: readiness drops at once, an in-flight request finishes, exit 0 within the grace period", async () => {
    const c = replicas[1]!;
    const { idToken } = await op.obtainIdToken({ sub: "container-pg-inflight" });
    const body = JSON.stringify({ id_token: idToken, provider: "acme" });
    // A request whose body is still arriving when the signal comes and when the drain begins.
    let inflight!: ReturnType<typeof request>;
    const response = new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request(
        `${c.url}/auth/id-token/signin`,
        { method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
        (res) => {
          let text = "";
          res.on("data", (d: Buffer) => (text += d.toString()));
          res.on("end", () => resolve({ status: res.statusCode!, text }));
        },
      );
      req.on("error", reject);
      req.write(body.slice(0, 20));
      inflight = req;
    });
    await new Promise((r) => setTimeout(r, 200));

    const signalled = performance.now();
    expect(podman(["kill", "--signal", "TERM", c.name]).code).toBe(0);
    let readyz = 200;
    while (readyz === 200 && performance.now() - signalled < 2000) {
      readyz = (await fetch(`${c.url}/readyz`)).status;
    }
    expect(readyz).toBe(503);
    expect(performance.now() - signalled).toBeLessThan(delayMs);
    // Still serving during the pre-stop delay.
    expect((await fetch(`${c.url}/healthz`)).status).toBe(200);

    while (!c.logs().includes('"msg":"draining"')) await new Promise((r) => setTimeout(r, 50));
    inflight.end(body.slice(20));
    const done = await response;
    expect(done.status, done.text).toBe(200);
    expect(await c.exited).toBe(0);
    expect(performance.now() - signalled).toBeLessThan(delayMs + 10_000);
    expect(c.logs()).toContain('"msg":"stopped"');
    // The other replica serves on.
    expect((await fetch(`${replicas[0]!.url}/readyz`)).status).toBe(200);
    expect(await sigterm(replicas[0]!)).toBe(0);
  });
});
