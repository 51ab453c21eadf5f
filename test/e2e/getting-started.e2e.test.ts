/**
 * What someone starting the service for the first time meets, each on the real process or a real
 * server: usage instead of a stack trace, configuration from the environment (CORS origins, an
 * admin-key file), dev tokens that survive a restart, a wrong key-encryption key explained with the
 * ways out, and the quick start's second sign-in at `medium` risk.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeProtectedHeader } from "jose";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { mintAdminKey } from "../../src/tokens/admin-keys.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { freePort, runMain, startServiceProcess, type ServiceProcess } from "../support/service-process.ts";
import { devIdToken, restSignin, uniqueSub } from "../support/signin-e2e.ts";

const STACK_LINE = /^\s+at .+:\d+:\d+\)?$/m;

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "identity-getting-started-"));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("the command line", () => {
  it("--help prints usage on stdout and exits 0; a wrong option or command says so with the usage, exit 2, no stack trace", () => {
    for (const flag of ["--help", "-h"]) {
      const help = runMain([flag]);
      expect(help.status).toBe(0);
      expect(help.stdout).toMatch(/^Usage:\n/);
      expect(help.stdout).toContain("rotate-keys");
      expect(help.stderr).toBe("");
    }
    const wrong = runMain(["--bogus"]);
    expect(wrong.status).toBe(2);
    expect(wrong.stderr).toContain("Unknown option '--bogus'");
    expect(wrong.stderr).toContain("Usage:");
    expect(wrong.stderr).not.toMatch(STACK_LINE);
    const command = runMain(["frobnicate"]);
    expect(command.status).toBe(2);
    expect(command.stderr).toMatch(/^unknown command frobnicate\n/);
    expect(command.stderr).not.toMatch(STACK_LINE);
  });
});

describe("the real process", () => {
  let procs: ServiceProcess[] = [];
  afterEach(async () => {
    for (const p of procs) await p.stop();
    procs = [];
  });
  const start = async (options: Parameters<typeof startServiceProcess>[0]) => {
    const p = await startServiceProcess(options);
    procs.push(p);
    return p;
  };
  /** Starting must fail: resolves with what the process said (a start that succeeds fails the test). */
  const refusedStart = (options: Parameters<typeof startServiceProcess>[0]) =>
    startServiceProcess(options).then(
      (p) => {
        procs.push(p);
        throw new Error("the service started");
      },
      (e: Error) => e.message,
    );
  const stop = async (p: ServiceProcess) => {
    procs = procs.filter((x) => x !== p);
    expect(await p.stop()).toBe(0);
  };

  it("takes CORS origins from CORS_ALLOWED_ORIGINS and admin keys from ADMIN_API_KEYS_FILE", async () => {
    const dir = tempDir();
    const key = mintAdminKey();
    const keysFile = join(dir, "admin-keys.yaml");
    writeFileSync(keysFile, `- { name: ops, sha256: ${key.sha256Hex} }\n`, { mode: 0o600 });
    const p = await start({
      config: { providers: { acme: { issuer: "https://issuer.example", client_ids: ["app"] } } },
      env: { CORS_ALLOWED_ORIGINS: "https://app.example, https://admin.example", ADMIN_API_KEYS_FILE: keysFile },
    });

    const preflight = await fetch(`${p.url}/auth/id-token/signin`, {
      method: "OPTIONS",
      headers: { origin: "https://admin.example", "access-control-request-method": "POST" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("https://admin.example");
    const other = await fetch(`${p.url}/auth/id-token/signin`, {
      method: "OPTIONS",
      headers: { origin: "https://evil.example" },
    });
    expect(other.status).toBe(403);

    const users = await fetch(`${p.url}/admin/users`, { headers: { authorization: `Bearer ${key.key}` } });
    expect(users.status).toBe(200);
    const wrong = await fetch(`${p.url}/admin/users`, { headers: { authorization: `Bearer ${mintAdminKey().key}` } });
    expect(((await wrong.json()) as { code: string }).code).toBe("admin_credential_invalid");
  });

  it("dev mode: the dev issuer's key is kept in data_dir (0600), so an ID token minted before a restart signs in after it", async () => {
    const dir = tempDir();
    const port = String(await freePort()); // the issuer URL carries the port: `npm start` keeps 8080
    const first = await start({ config: {}, args: ["--dev"], dir, env: { PORT: port } });
    const idToken = await devIdToken(first.url, uniqueSub("restart"));
    await stop(first);
    const keyFile = join(dir, "data", "dev-issuer-key.json");
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);

    const second = await start({ config: {}, args: ["--dev"], dir, env: { PORT: port } });
    expect(second.url).toBe(first.url);
    const signin = await restSignin(second.url, { id_token: idToken, provider: "dev" });
    expect(signin.status).toBe(200);
    expect(signin.body["access_token"]).toEqual(expect.any(String));
    await stop(second);

    // A damaged key file is named, with the way out, not a stack trace.
    writeFileSync(keyFile, "{}");
    const refused = await refusedStart({ config: {}, args: ["--dev"], dir, env: { PORT: port } });
    expect(refused).toContain(`the dev issuer's key ${keyFile} cannot be used (delete it to start with a new one)`);
    expect(refused).not.toMatch(STACK_LINE);
  }, 90_000);

  it("a key-encryption key other than the one that sealed the signing keys: which key, why, the two ways out; the second way works", async () => {
    const dir = tempDir();
    const kekA = Buffer.alloc(32, 1).toString("base64");
    const kekB = Buffer.alloc(32, 2).toString("base64");
    const PORT = String(await freePort()); // the same issuer (it carries the port) after the restart
    const first = await start({ config: {}, args: ["--dev"], dir, env: { KEY_ENCRYPTION_KEY: kekA, PORT } });
    const login = await restSignin(first.url, {
      id_token: await devIdToken(first.url, uniqueSub("kek")),
      provider: "dev",
    });
    expect(login.status).toBe(200);
    const accessToken = String(login.body["access_token"]);
    const { kid } = decodeProtectedHeader(accessToken);
    await stop(first);

    const refused = await refusedStart({ config: {}, args: ["--dev"], dir, env: { KEY_ENCRYPTION_KEY: kekB, PORT } });
    expect(refused).toContain("service exited with 2");
    expect(refused).toContain(`the signing key ${kid} in the database cannot be opened`);
    expect(refused).toContain(
      "tokens.key_encryption_key (KEY_ENCRYPTION_KEY) differs from the one that sealed the signing keys",
    );
    expect(refused).toContain("1. start with the KEK that sealed them");
    expect(refused).toContain("2. if that KEK is lost: `npm run keys:rotate -- --replace-unreadable`");
    expect(refused).not.toMatch(STACK_LINE);
    expect(refused).not.toContain(kekB); // never the key itself

    // Way out 2: a new signing key under the new KEK; the old one stays published until its tokens expire.
    const rotated = runMain(["rotate-keys", "--replace-unreadable", "--config", join(dir, "config.yaml")], {
      env: { KEY_ENCRYPTION_KEY: kekB },
    });
    expect(rotated.stderr).toBe("");
    expect(rotated.status).toBe(0);
    const second = await start({ config: {}, args: ["--dev"], dir, env: { KEY_ENCRYPTION_KEY: kekB, PORT } });
    const me = await fetch(`${second.url}/auth/me`, { headers: { authorization: `Bearer ${accessToken}` } });
    expect(me.status).toBe(200);
    const fresh = await restSignin(second.url, {
      id_token: await devIdToken(second.url, uniqueSub("kek2")),
      provider: "dev",
    });
    expect(fresh.status).toBe(200);
    expect(decodeProtectedHeader(String(fresh.body["access_token"])).kid).not.toBe(kid);
    await stop(second);
    // Way out 1 would now be the new KEK: the old one cannot open the new key.
    const back = runMain(["rotate-keys", "--config", join(dir, "config.yaml")], { env: { KEY_ENCRYPTION_KEY: kekA } });
    expect(back.status).toBe(2);
    expect(back.stderr).toContain("cannot be opened");
  }, 120_000);
});

describe("the quick start's risk levels (README)", () => {
  let t: TestApp;
  afterAll(() => t?.close());

  it("a second sign-in from another client is a new device: medium risk, let in with mfa_enrollment_required (no factor yet)", async () => {
    t = await startTestApp({ config: { dev: true } });
    const sub = uniqueSub("quickstart");
    const signin = async (userAgent: string) =>
      restSignin(
        t.url,
        { id_token: await devIdToken(t.url, sub, { email: `${sub}@example.com` }), provider: "dev" },
        { headers: { "user-agent": userAgent } },
      );
    const first = await signin("curl/8.5.0");
    expect(first.body).toMatchObject({ risk_level: "low", requires_mfa: false }); // a new account has no history
    expect((await signin("curl/8.11.1")).body).toMatchObject({ risk_level: "low" }); // the same client (versions ignored)
    const other = await signin(
      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    );
    expect(other.status).toBe(200);
    expect(other.body).toMatchObject({
      risk_level: "medium",
      requires_mfa: false,
      mfa_check_reason: "mfa_enrollment_required",
      risk_assessment: { level: "medium", score: 30, require_mfa: true },
    });
    expect(other.body["access_token"]).toEqual(expect.any(String));
  });
});
