/**
 * The admin tool as operators run it: `node src/main.ts admin …` as a child process against the
 * configured database (DATABASE_URL), on SQLite and PostgreSQL, next to a running server. Checks
 * its output (tables and --json), exit statuses, what it changed in the database, and that the
 * server honours the changes at once.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.ts";
import { testDatabaseKinds } from "../support/databases.ts";
import { devIdToken, restSignin, uniqueSub } from "../support/signin-e2e.ts";

const MAIN = fileURLToPath(new URL("../../src/main.ts", import.meta.url));

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

for (const kind of testDatabaseKinds()) {
  describe(`admin CLI on ${kind.dialect}`, kind.suiteOptions, () => {
    let t: TestApp;
    let cwd: string;
    let alice: { id: string; sub: string; email: string };
    let bob: { id: string; sub: string; email: string };

    /** Runs the CLI in an empty directory (no config.yaml) with only DATABASE_URL set. */
    function cli(...args: string[]): Promise<CliResult> {
      return new Promise((resolve) => {
        execFile(
          process.execPath,
          [MAIN, "admin", ...args],
          { cwd, env: { PATH: process.env["PATH"] ?? "", DATABASE_URL: t.database.url }, timeout: 20_000 },
          (error, stdout, stderr) => resolve({ code: error === null ? 0 : Number(error.code ?? 1), stdout, stderr }),
        );
      });
    }
    async function cliJson(...args: string[]) {
      const r = await cli(...args, "--json");
      expect(r.stderr, r.stderr).toBe("");
      expect(r.code).toBe(0);
      return JSON.parse(r.stdout) as Record<string, unknown> & { user: Record<string, unknown> };
    }
    async function signin(sub: string, email: string) {
      return restSignin(t.url, {
        id_token: await devIdToken(t.url, sub, { email, email_verified: true }),
        provider: "dev",
      });
    }
    async function newUser(label: string) {
      const sub = uniqueSub(label);
      const email = `${sub}@example.com`;
      const res = await signin(sub, email);
      expect(res.status).toBe(200);
      return { id: res.body["user_id"] as string, sub, email };
    }

    beforeAll(async () => {
      cwd = mkdtempSync(join(tmpdir(), "admin-cli-"));
      t = await startTestApp({ kind, config: { dev: true } });
      bob = await newUser("bob");
      alice = await newUser("alice");
      expect((await signin(alice.sub, alice.email)).status).toBe(200); // a second session
      const db = t.app.database.client;
      // Alice is a hybrid account: a second provider's identity, a local password, an MFA factor.
      await db.identity.create({
        data: {
          id: `idn_acme${alice.id.slice(4, 12)}`,
          userId: alice.id,
          issuer: "https://acme.example",
          subject: "alice-at-acme",
          provider: "acme",
          email: alice.email,
          emailVerified: true,
        },
      });
      await db.passwordCredential.create({
        data: { userId: alice.id, hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", changedAt: new Date() },
      });
      await db.mfaFactor.create({
        data: {
          id: `mfa_${alice.id.slice(4)}`,
          userId: alice.id,
          type: "totp",
          secretEnc: "ciphertext",
          confirmedAt: new Date(),
        },
      });
      for (let i = 0; i < 3; i++)
        await db.recoveryCode.create({
          data: { id: `rcv_${alice.id.slice(4)}${i}`, userId: alice.id, codeHash: `h${i}${alice.id}` },
        });
      // Two accounts sharing an (unverified) e-mail address.
      for (const n of [1, 2]) {
        await db.user.create({
          data: {
            id: `usr_twin${n}${alice.id.slice(4, 10)}`,
            username: `twin${n}${alice.id.slice(4, 10)}`,
            email: `twins-${alice.id}@example.com`,
            emailNormalized: `twins-${alice.id}@example.com`,
            updatedAt: new Date(),
          },
        });
      }
    });
    afterAll(async () => {
      await t?.close();
      rmSync(cwd, { recursive: true, force: true });
    });

    it("users list: newest first, as a table or JSON, filtered by status", async () => {
      const json = await cliJson("users", "list", "--limit", "10");
      const users = json["users"] as Record<string, unknown>[];
      const ids = users.map((u) => u["id"]);
      expect(ids.indexOf(alice.id)).toBeLessThan(ids.indexOf(bob.id));
      expect(users.find((u) => u["id"] === alice.id)).toMatchObject({
        username: expect.any(String),
        email: alice.email,
        status: "active",
        effective_status: "active",
        must_change_password: false,
        password: { changed_at: expect.any(String), expires_in_days: null, warning: null, forced_change: false },
        last_signin_at: expect.stringMatching(/Z$/),
      });
      expect(users.find((u) => u["id"] === bob.id)).toMatchObject({ password: null });

      const text = await cli("users", "list");
      expect(text.code).toBe(0);
      expect(text.stdout.split("\n")[0]).toMatch(
        /^ID\s+USERNAME\s+EMAIL\s+STATUS\s+PASSWORD\s+CREATED\s+LAST SIGN-IN$/,
      );
      expect(text.stdout).toContain(alice.id);

      expect(await cliJson("users", "list", "--status", "disabled")).toEqual({ users: [] });
      expect(await cli("users", "list", "--status", "gone")).toMatchObject({
        code: 2,
        stderr: expect.stringContaining("--status must be one of"),
      });
    });

    it("users show: identities, sessions, password and MFA factors; found by id, username or e-mail", async () => {
      const byEmail = await cliJson("users", "show", alice.email.toUpperCase());
      expect(byEmail).toMatchObject({
        id: alice.id,
        active_sessions: 2,
        mfa: { factors: [{ type: "totp", confirmed_at: expect.any(String) }], unused_recovery_codes: 3 },
      });
      expect((byEmail["identities"] as { provider: string }[]).map((i) => i.provider)).toEqual(["dev", "acme"]);
      expect(JSON.stringify(byEmail)).not.toContain("ciphertext");
      expect((await cliJson("users", "show", byEmail["username"] as string))["id"]).toBe(alice.id);
      const text = await cli("users", "show", alice.id);
      expect(text.stdout).toMatch(/^active sessions:\s+2$/m);
      expect(text.stdout).toMatch(/^mfa factors:\s+totp$/m);
      expect(text.stdout).toMatch(/^identities \(2\):$/m);
    });

    it("disable ends every session at once and the server refuses the user; enable lets them back", async () => {
      const out = await cliJson("users", "disable", alice.id, "--reason", "offboarding");
      expect(out).toMatchObject({
        previous_status: "active",
        changed: true,
        revoked_sessions: 2,
        user: { status: "disabled", status_reason: "offboarding" },
      });
      const db = t.app.database.client;
      expect(await db.session.count({ where: { userId: alice.id, revokedAt: null } })).toBe(0);
      const audit = await db.auditEvent.findFirstOrThrow({ where: { userId: alice.id, type: "admin.user_disabled" } });
      expect(audit.userAgent).toBe("admin-cli");
      expect(JSON.parse(audit.detail!)).toMatchObject({
        actor: expect.any(String),
        previous_status: "active",
        revoked_sessions: 2,
      });
      expect((await signin(alice.sub, alice.email)).body).toMatchObject({ code: "user_disabled" });

      const text = await cli("users", "enable", alice.email);
      expect(text).toMatchObject({ code: 0, stdout: expect.stringMatching(/^enabled .* \(was disabled\)\n$/) });
      expect((await cli("users", "enable", alice.email)).stdout).toMatch(/already active; nothing changed/);
      expect((await signin(alice.sub, alice.email)).status).toBe(200);
    });

    it("lock for a while or until a time; unlock", async () => {
      const before = Date.now();
      const locked = await cliJson("users", "lock", bob.id, "--for", "1h30m", "--reason", "too many MFA failures");
      const until = Date.parse(locked.user["locked_until"] as string);
      expect(until - before).toBeGreaterThanOrEqual(90 * 60_000 - 1000);
      expect(until - before).toBeLessThan(90 * 60_000 + 20_000);
      const refused = await signin(bob.sub, bob.email);
      expect(refused).toMatchObject({
        status: 403,
        body: { code: "user_locked", details: { locked_until: new Date(until).toISOString() } },
      });

      const text = await cli("users", "lock", bob.id, "--until", "2099-01-01T00:00:00+01:00");
      expect(text).toMatchObject({
        code: 0,
        stdout: expect.stringContaining("until 2098-12-31T23:00:00.000Z (was locked)"),
      });
      expect(await cli("users", "lock", bob.id, "--until", "2020-01-01T00:00:00Z")).toMatchObject({
        code: 2,
        stderr: expect.stringContaining("must end in the future"),
      });
      expect(await cli("users", "lock", bob.id, "--until", "2099-01-01T00:00")).toMatchObject({
        code: 2,
        stderr: expect.stringContaining("with its offset"),
      });
      expect(await cli("users", "lock", bob.id, "--for", "soon")).toMatchObject({ code: 2 });

      expect(await cliJson("users", "unlock", bob.id)).toMatchObject({
        previous_status: "locked",
        user: { status: "active", locked_until: null, status_reason: null },
      });
      expect(await cli("users", "unlock", bob.id)).toMatchObject({
        code: 4,
        stderr: expect.stringContaining("[user_status_conflict]"),
      });
      expect((await signin(bob.sub, bob.email)).status).toBe(200);
    });

    it("force-password-change sets the flag the next sign-in reports; refused without a password", async () => {
      const out = await cliJson("users", "force-password-change", alice.id);
      expect(out.user).toMatchObject({ must_change_password: true, password: { forced_change: true } });
      const login = await signin(alice.sub, alice.email);
      expect(login.body).toMatchObject({ must_change_password: true, user: { must_change_password: true } });
      expect((await cliJson("users", "force-password-change", alice.id, "--clear")).user).toMatchObject({
        must_change_password: false,
      });
      expect(await cli("users", "force-password-change", bob.id)).toMatchObject({
        code: 4,
        stderr: expect.stringContaining("[password_not_set]"),
      });
    });

    it("unlink removes one identity and its provider's sessions; the last one only with --force", async () => {
      const db = t.app.database.client;
      const refused = await cli("users", "unlink", bob.id, "dev", "--json");
      expect(refused.code).toBe(4);
      expect(JSON.parse(refused.stderr)).toMatchObject({ error: { code: "last_identity" } });
      expect(await db.identity.count({ where: { userId: bob.id } })).toBe(1);

      const liveBefore = await db.session.count({ where: { userId: alice.id, revokedAt: null } });
      const acme = await cliJson("users", "unlink", alice.id, "acme");
      expect(acme).toMatchObject({
        identity: { provider: "acme", subject: "alice-at-acme" },
        remaining_identities: 1,
        revoked_sessions: 0,
      });
      expect(await db.session.count({ where: { userId: alice.id, revokedAt: null } })).toBe(liveBefore);
      expect(await cli("users", "unlink", alice.id, "acme")).toMatchObject({
        code: 3,
        stderr: expect.stringContaining("[identity_not_found]"),
      });

      const forced = await cliJson("users", "unlink", bob.id, "dev", "--force");
      expect(forced).toMatchObject({ remaining_identities: 0, revoked_sessions: 2 });
      expect(await db.identity.count({ where: { userId: bob.id } })).toBe(0);
      expect(await db.session.count({ where: { userId: bob.id, revokedAt: null } })).toBe(0);
    });

    it("audit lists the user's recent events, newest first, admin actions with their actor", async () => {
      const out = await cliJson("audit", alice.id, "--limit", "4");
      const events = out["events"] as { type: string; at: string; detail: Record<string, unknown> | null }[];
      expect(events).toHaveLength(4);
      expect(events.map((e) => e.at)).toEqual([...events.map((e) => e.at)].sort().reverse());
      expect(events[0]).toMatchObject({
        type: "admin.identity_unlinked",
        detail: { provider: "acme", forced: false, actor: expect.any(String) },
      });
      const text = await cli("audit", alice.email);
      expect(text.stdout.split("\n")[0]).toMatch(/^AT\s+TYPE\s+CODE\s+PROVIDER\s+IP\s+DETAIL$/);
      expect(text.stdout).toContain("signin.succeeded");
      expect(text.stdout).toContain("admin.user_disabled");
    });

    it("says clearly what went wrong, with distinct exit statuses", async () => {
      expect(await cli("users", "show", "nobody-here")).toEqual({
        code: 3,
        stdout: "",
        stderr: "error: no user nobody-here [user_not_found]\n",
      });
      const twins = await cli("users", "show", `twins-${alice.id}@example.com`);
      expect(twins.code).toBe(4);
      expect(twins.stderr).toMatch(
        /2 users have the e-mail address .* \[user_ambiguous\]\ncandidates: usr_twin1\S+ usr_twin2\S+\n/,
      );
      expect(await cli("users", "frobnicate", "x")).toMatchObject({
        code: 2,
        stderr: expect.stringContaining('unknown command "users frobnicate"'),
      });
      expect(await cli("users", "show")).toMatchObject({
        code: 2,
        stderr: expect.stringContaining("users show takes <user>"),
      });
      expect(await cli("users", "disable", bob.id, "--force")).toMatchObject({
        code: 2,
        stderr: expect.stringContaining("does not take --force"),
      });
      expect(await cli()).toMatchObject({ code: 2, stderr: expect.stringContaining("Usage:") });
      expect(await cli("--help")).toMatchObject({ code: 0, stdout: expect.stringContaining("Exit status:") });
    });
  });
}

describe("admin CLI without a database", () => {
  it("refuses a missing SQLite file instead of creating one", async () => {
    const dir = mkdtempSync(join(tmpdir(), "admin-cli-none-"));
    try {
      const r = await new Promise<CliResult>((resolve) => {
        execFile(
          process.execPath,
          [MAIN, "admin", "users", "list"],
          { cwd: dir, env: { PATH: process.env["PATH"] ?? "", DATABASE_URL: `file:${dir}/missing.db` } },
          (error, stdout, stderr) => resolve({ code: error === null ? 0 : Number(error.code ?? 1), stdout, stderr }),
        );
      });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`no database at ${dir}/missing.db`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("admin CLI keys new", () => {
  function run(args: string[], cwd: string): Promise<CliResult> {
    return new Promise((resolve) => {
      // No DATABASE_URL and no config: minting a key needs neither.
      execFile(
        process.execPath,
        [MAIN, "admin", "keys", "new", ...args],
        { cwd, env: { PATH: process.env["PATH"] ?? "" } },
        (error, stdout, stderr) => resolve({ code: error === null ? 0 : Number(error.code ?? 1), stdout, stderr }),
      );
    });
  }

  it("prints a fresh key once with the hash to configure, and stores nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "admin-cli-keys-"));
    try {
      const json = await run(["--name", "ops", "--json"], dir);
      expect(json).toMatchObject({ code: 0, stderr: "" });
      const out = JSON.parse(json.stdout) as { name: string; key: string; sha256: string; config_entry: unknown };
      expect(out.key).toMatch(/^adm_[A-Za-z0-9_-]{43}$/);
      expect(out.sha256).toBe(createHash("sha256").update(out.key).digest("hex"));
      expect(out.config_entry).toEqual({ name: "ops", sha256: out.sha256 });

      const text = await run(["--name", "ops"], dir);
      expect(text.code).toBe(0);
      const key = /^ {2}(adm_\S+)$/m.exec(text.stdout)?.[1];
      expect(key).toBeDefined();
      expect(key).not.toBe(out.key);
      expect(text.stdout).toContain(
        `admin:\n  api_keys:\n    - { name: "ops", sha256: ${createHash("sha256").update(key!).digest("hex")} }\n`,
      );
      expect(readdirSync(dir)).toEqual([]);

      expect(await run([], dir)).toMatchObject({ code: 2, stderr: expect.stringContaining("keys new needs --name") });
      expect(await run(["--name", "two words"], dir)).toMatchObject({ code: 2 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
