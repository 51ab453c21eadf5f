/**
 * The admin API (AdminService) on a real server, over REST and Connect, on SQLite and PostgreSQL:
 * who gets in (admin keys only, never a user's access token; nobody when no key is configured),
 * that each operation does what the admin tool does and the server honours it at once, and that
 * the audit trail names the key that acted.
 */
import { request as httpRequest } from "node:http";
import * as http2 from "node:http2";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";
import { AdminService } from "../../gen/pb/identity/v1/admin_service_pb.ts";
import { mintAdminKey } from "../../src/tokens/admin-keys.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { testDatabaseKinds } from "../support/databases.ts";
import { devIdToken, newRequestId, restSignin, uniqueSub } from "../support/signin-e2e.ts";

const OPS = mintAdminKey();
const ONCALL = mintAdminKey();
/** Configured as the admin tool prints them (hex) and in base64url. */
const ADMIN_CONFIG = {
  api_keys: [
    { name: "ops", sha256: OPS.sha256Hex },
    { name: "oncall", sha256: Buffer.from(ONCALL.sha256Hex, "hex").toString("base64url") },
  ],
};

interface Rest {
  status: number;
  body: Record<string, unknown>;
}

async function rest(
  url: string,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: unknown } = {},
): Promise<Rest> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { ...(options.body === undefined ? {} : { "content-type": "application/json" }), ...options.headers },
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

async function connectRefusal(call: Promise<unknown>) {
  const e = await call.then(
    () => null,
    (err: unknown) => ConnectError.from(err),
  );
  expect(e, "expected the call to be refused").not.toBeNull();
  return { code: e!.code, reason: e!.findDetails(ErrorInfoSchema)[0]?.reason };
}

const mintIdToken = (url: string, sub: string, email: string) => devIdToken(url, sub, { email, email_verified: true });

for (const kind of testDatabaseKinds()) {
  describe(`admin API on ${kind.dialect}`, kind.suiteOptions, () => {
    let t: TestApp;
    let admin: ReturnType<typeof createClient<typeof AdminService>>;
    type Person = { id: string; sub: string; email: string; accessToken: string; refreshToken: string };
    let alice: Person;
    let bob: Person;

    async function signin(p: { sub: string; email: string }) {
      return restSignin(t.url, { id_token: await mintIdToken(t.url, p.sub, p.email), provider: "dev" });
    }
    async function newUser(label: string): Promise<Person> {
      const sub = uniqueSub(label);
      const email = `${sub}@example.com`;
      const res = await signin({ sub, email });
      expect(res.status).toBe(200);
      return {
        id: res.body["user_id"] as string,
        sub,
        email,
        accessToken: res.body["access_token"] as string,
        refreshToken: res.body["refresh_token"] as string,
      };
    }

    beforeAll(async () => {
      t = await startTestApp({ kind, config: { dev: true, admin: ADMIN_CONFIG } });
      admin = createClient(AdminService, createConnectTransport({ baseUrl: t.url, httpVersion: "1.1" }));
      bob = await newUser("bob");
      alice = await newUser("alice");
      expect((await signin(alice)).status).toBe(200); // a second session
    });
    afterAll(async () => {
      await t?.close();
    });

    it("refuses callers without an admin key: none, a user's access token, a wrong key", async () => {
      const auditBefore = await t.app.database.client.auditEvent.count();
      expect(await rest(t.url, "GET", "/admin/users")).toEqual({
        status: 401,
        body: { code: "admin_credential_required", status: "unauthenticated", message: expect.any(String) },
      });
      // A genuine, live access token of a user: still not an admin credential.
      expect(await rest(t.url, "GET", "/admin/users", { headers: bearer(alice.accessToken) })).toMatchObject({
        status: 401,
        body: { code: "admin_credential_required" },
      });
      expect(
        await rest(t.url, "POST", `/admin/users/${bob.id}/disable`, { headers: bearer(alice.accessToken), body: {} }),
      ).toMatchObject({ status: 401, body: { code: "admin_credential_required" } });
      const wrong = mintAdminKey().key;
      expect(await rest(t.url, "GET", "/admin/users", { headers: bearer(wrong) })).toMatchObject({
        status: 401,
        body: { code: "admin_credential_invalid" },
      });
      expect(await rest(t.url, "GET", "/admin/users", { headers: { "x-admin-key": wrong } })).toMatchObject({
        status: 401,
        body: { code: "admin_credential_invalid" },
      });
      // The configured hash is not the key.
      expect(await rest(t.url, "GET", "/admin/users", { headers: { "x-admin-key": OPS.sha256Hex } })).toMatchObject({
        status: 401,
        body: { code: "admin_credential_invalid" },
      });

      expect(await connectRefusal(admin.listUsers({}))).toEqual({
        code: Code.Unauthenticated,
        reason: "admin_credential_required",
      });
      expect(await connectRefusal(admin.listUsers({}, { headers: bearer(alice.accessToken) }))).toEqual({
        code: Code.Unauthenticated,
        reason: "admin_credential_required",
      });
      expect(await connectRefusal(admin.disableUser({ userId: bob.id }, { headers: bearer(wrong) }))).toEqual({
        code: Code.Unauthenticated,
        reason: "admin_credential_invalid",
      });

      // Nor does an admin key open the user's services.
      expect(await rest(t.url, "GET", "/auth/me", { headers: bearer(OPS.key) })).toMatchObject({
        status: 401,
        body: { code: expect.stringMatching(/^access_token_/) },
      });
      expect((await t.app.database.client.user.findUniqueOrThrow({ where: { id: bob.id } })).status).toBe("active");
      expect(await t.app.database.client.auditEvent.count()).toBe(auditBefore);
    });

    it("a POST without a body (and without Content-Type) is an empty request, over HTTP/1.1 and HTTP/2; other bodies must be JSON", async () => {
      const carol = await newUser("carol");
      // fetch sends `content-length: 0`; curl -X POST sends no length at all.
      const disabled = await fetch(`${t.url}/admin/users/${carol.id}/disable`, {
        method: "POST",
        headers: bearer(OPS.key),
      });
      expect(disabled.status).toBe(200);
      expect((await t.app.database.client.user.findUniqueOrThrow({ where: { id: carol.id } })).status).toBe("disabled");
      const enabled = await new Promise<number>((resolve, reject) => {
        const target = new URL(t.url);
        const req = httpRequest(
          {
            host: target.hostname,
            port: target.port,
            method: "POST",
            path: `/admin/users/${carol.id}/enable`,
            headers: bearer(OPS.key),
          },
          (res) => {
            res.resume();
            resolve(res.statusCode!);
          },
        );
        req.on("error", reject);
        req.end();
      });
      expect(enabled).toBe(200);
      const session = http2.connect(t.url);
      try {
        const h2 = await new Promise<number>((resolve, reject) => {
          const stream = session.request(
            { ":method": "POST", ":path": `/admin/users/${carol.id}/lock`, ...bearer(OPS.key) },
            { endStream: true },
          );
          stream.on("response", (h) => resolve(Number(h[":status"])));
          stream.on("error", reject);
          stream.resume();
        });
        expect(h2).toBe(200);
        // An untyped body over HTTP/2 is not taken for JSON.
        const untyped = await new Promise<number>((resolve, reject) => {
          const stream = session.request({
            ":method": "POST",
            ":path": `/admin/users/${carol.id}/disable`,
            ...bearer(OPS.key),
          });
          stream.on("response", (h) => resolve(Number(h[":status"])));
          stream.on("error", reject);
          stream.resume();
          stream.end('{"reason":"x"}');
        });
        expect(untyped).toBe(415);
      } finally {
        session.close();
      }
      expect((await t.app.database.client.user.findUniqueOrThrow({ where: { id: carol.id } })).status).toBe("locked");
      // A body with another type, or a body without one, is still refused.
      const typed = await fetch(`${t.url}/admin/users/${carol.id}/disable`, {
        method: "POST",
        headers: { ...bearer(OPS.key), "content-type": "text/plain" },
        body: "{}",
      });
      expect(typed.status).toBe(415);
      const untyped = await fetch(`${t.url}/admin/users/${carol.id}/disable`, {
        method: "POST",
        headers: bearer(OPS.key),
        body: new Blob(['{"reason":"x"}']),
      });
      expect(untyped.status).toBe(415);
      expect((await t.app.database.client.user.findUniqueOrThrow({ where: { id: carol.id } })).status).toBe("locked");
    });

    it("lists and shows users over REST (query parameters map to request fields)", async () => {
      const list = await rest(t.url, "GET", "/admin/users?limit=10", { headers: bearer(OPS.key) });
      expect(list.status).toBe(200);
      const users = list.body["users"] as Record<string, unknown>[];
      const ids = users.map((u) => u["id"]);
      expect(ids.indexOf(alice.id)).toBeGreaterThanOrEqual(0);
      expect(ids.indexOf(alice.id)).toBeLessThan(ids.indexOf(bob.id));
      expect(users.find((u) => u["id"] === alice.id)).toEqual({
        id: alice.id,
        username: expect.any(String),
        email: alice.email,
        email_verified: true,
        status: "active",
        effective_status: "active",
        must_change_password: false,
        created_at: expect.stringMatching(/Z$/),
        last_signin_at: expect.stringMatching(/Z$/),
      });
      expect(
        (await rest(t.url, "GET", "/admin/users?limit=1", { headers: { "x-admin-key": ONCALL.key } })).body["users"],
      ).toHaveLength(1);
      expect(await rest(t.url, "GET", "/admin/users?status=disabled", { headers: bearer(OPS.key) })).toEqual({
        status: 200,
        body: { users: [] },
      });
      expect(await rest(t.url, "GET", "/admin/users?status=gone", { headers: bearer(OPS.key) })).toMatchObject({
        status: 400,
        body: { code: "invalid_request" },
      });
      expect(await rest(t.url, "GET", "/admin/users?limit=0", { headers: bearer(OPS.key) })).toMatchObject({
        status: 400,
        body: { code: "invalid_request" },
      });

      const shown = await rest(t.url, "GET", `/admin/users/${alice.id}`, { headers: bearer(OPS.key) });
      expect(shown).toMatchObject({
        status: 200,
        body: {
          user: { id: alice.id, status: "active" },
          active_sessions: 2,
          mfa_factors: [],
          unused_recovery_codes: 0,
        },
      });
      expect(shown.body["identities"]).toEqual([
        expect.objectContaining({
          id: expect.stringMatching(/^idn_/),
          provider: "dev",
          subject: alice.sub,
          email: alice.email,
          email_verified: true,
        }),
      ]);
      expect((shown.body["user"] as Record<string, unknown>)["password"]).toBeUndefined();
      // As in the admin tool, an e-mail address names a user too.
      const byEmail = await rest(t.url, "GET", `/admin/users/${encodeURIComponent(alice.email.toUpperCase())}`, {
        headers: bearer(OPS.key),
      });
      expect((byEmail.body["user"] as Record<string, unknown>)["id"]).toBe(alice.id);
      expect(await rest(t.url, "GET", "/admin/users/usr_nobody", { headers: bearer(OPS.key) })).toMatchObject({
        status: 404,
        body: { code: "user_not_found" },
      });
    });

    it("disable over Connect ends every session: sign-in gets 403 user_disabled and refresh fails; enable lets the user back", async () => {
      const requestId = newRequestId();
      const disabled = await admin.disableUser(
        { userId: alice.id, reason: "offboarding" },
        { headers: { ...bearer(OPS.key), "x-request-id": requestId } },
      );
      expect(disabled).toMatchObject({
        previousStatus: "active",
        changed: true,
        revokedSessions: 2,
        user: { status: "disabled", statusReason: "offboarding" },
      });
      expect(await t.app.database.client.session.count({ where: { userId: alice.id, revokedAt: null } })).toBe(0);

      expect(await signin(alice)).toMatchObject({ status: 403, body: { code: "user_disabled" } });
      expect(
        await rest(t.url, "POST", "/auth/token/refresh", { body: { refresh_token: alice.refreshToken } }),
      ).toMatchObject({ status: 403, body: { code: "user_disabled" } });
      expect(await rest(t.url, "GET", "/auth/me", { headers: bearer(alice.accessToken) })).toMatchObject({
        status: 401,
        body: { code: "session_revoked" },
      });

      const audit = await t.app.database.client.auditEvent.findFirstOrThrow({
        where: { requestId, type: "admin.user_disabled" },
      });
      expect(audit).toMatchObject({ userId: alice.id, ip: "127.0.0.1" });
      expect(JSON.parse(audit.detail!)).toEqual({ actor: "ops", previous_status: "active", revoked_sessions: 2 });

      // Enabled with the other key, over REST with x-admin-key.
      const enabled = await rest(t.url, "POST", `/admin/users/${alice.id}/enable`, {
        headers: { "x-admin-key": ONCALL.key },
        body: {},
      });
      expect(enabled).toMatchObject({
        status: 200,
        body: { previous_status: "disabled", changed: true, revoked_sessions: 0, user: { status: "active" } },
      });
      expect((await admin.enableUser({ userId: alice.id }, { headers: bearer(OPS.key) })).changed).toBe(false);
      const back = await signin(alice);
      expect(back.status).toBe(200);
      alice.refreshToken = back.body["refresh_token"] as string;
    });

    it("lock until a time, then unlock; a lock must end in the future and carry its offset", async () => {
      const locked = await rest(t.url, "POST", `/admin/users/${bob.id}/lock`, {
        headers: bearer(OPS.key),
        body: { until: "2099-01-01T00:00:00+01:00", reason: "too many MFA failures" },
      });
      expect(locked).toMatchObject({
        status: 200,
        body: {
          previous_status: "active",
          revoked_sessions: 0,
          user: {
            status: "locked",
            effective_status: "locked",
            locked_until: "2098-12-31T23:00:00.000Z",
            status_reason: "too many MFA failures",
          },
        },
      });
      expect(await signin(bob)).toMatchObject({
        status: 403,
        body: { code: "user_locked", details: { locked_until: "2098-12-31T23:00:00.000Z" } },
      });
      // Sessions stay (unless revoke_sessions), but their refresh is refused while locked.
      expect(
        await rest(t.url, "POST", "/auth/token/refresh", { body: { refresh_token: bob.refreshToken } }),
      ).toMatchObject({ status: 403, body: { code: "user_locked" } });

      expect(
        await rest(t.url, "POST", `/admin/users/${bob.id}/lock`, {
          headers: bearer(OPS.key),
          body: { until: "2020-01-01T00:00:00Z" },
        }),
      ).toMatchObject({ status: 400, body: { code: "invalid_request" } });
      expect(
        await rest(t.url, "POST", `/admin/users/${bob.id}/lock`, {
          headers: bearer(OPS.key),
          body: { until: "2099-01-01T00:00" },
        }),
      ).toMatchObject({ status: 400, body: { code: "invalid_request", message: expect.stringContaining("offset") } });

      expect(await admin.unlockUser({ userId: bob.id }, { headers: bearer(OPS.key) })).toMatchObject({
        previousStatus: "locked",
        user: { status: "active" },
      });
      expect(await connectRefusal(admin.unlockUser({ userId: bob.id }, { headers: bearer(OPS.key) }))).toEqual({
        code: Code.FailedPrecondition,
        reason: "user_status_conflict",
      });
      expect(
        (await rest(t.url, "POST", "/auth/token/refresh", { body: { refresh_token: bob.refreshToken } })).status,
      ).toBe(200);
    });

    it("force-password-change needs a local password; with one, the next sign-in must change it", async () => {
      expect(
        await rest(t.url, "POST", `/admin/users/${bob.id}/force-password-change`, {
          headers: bearer(OPS.key),
          body: {},
        }),
      ).toMatchObject({ status: 400, body: { code: "password_not_set" } });
      await t.app.database.client.passwordCredential.create({
        data: { userId: alice.id, hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", changedAt: new Date() },
      });
      const forced = await admin.forcePasswordChange({ userId: alice.id }, { headers: bearer(OPS.key) });
      expect(forced.user).toMatchObject({ mustChangePassword: true, password: { forcedChange: true } });
      expect((await signin(alice)).body).toMatchObject({ must_change_password: true });
      expect(
        (await admin.forcePasswordChange({ userId: alice.id, clear: true }, { headers: bearer(OPS.key) })).user
          ?.mustChangePassword,
      ).toBe(false);
    });

    it("unlink refuses a user's last identity unless forced", async () => {
      const db = t.app.database.client;
      const [identity] = await db.identity.findMany({ where: { userId: bob.id } });
      const path = `/admin/users/${bob.id}/identities/${identity!.id}`;
      expect(await rest(t.url, "DELETE", path, { headers: bearer(OPS.key) })).toMatchObject({
        status: 400,
        body: { code: "last_identity", status: "failed_precondition" },
      });
      expect(
        await connectRefusal(admin.unlinkIdentity({ userId: bob.id, identityId: "dev" }, { headers: bearer(OPS.key) })),
      ).toEqual({ code: Code.FailedPrecondition, reason: "last_identity" });
      expect(await db.identity.count({ where: { userId: bob.id } })).toBe(1);
      expect(
        await rest(t.url, "DELETE", `/admin/users/${bob.id}/identities/idn_nothere`, { headers: bearer(OPS.key) }),
      ).toMatchObject({ status: 404, body: { code: "identity_not_found" } });

      expect(await rest(t.url, "DELETE", `${path}?force=yes`, { headers: bearer(OPS.key) })).toMatchObject({
        status: 400,
        body: { code: "invalid_request" },
      });

      const carol = await newUser("carol");
      const forced = await rest(t.url, "DELETE", `/admin/users/${carol.id}/identities/dev?force=true`, {
        headers: bearer(OPS.key),
      });
      expect(forced).toMatchObject({
        status: 200,
        body: { identity: { provider: "dev", subject: carol.sub }, remaining_identities: 0, revoked_sessions: 1 },
      });
      expect(await db.identity.count({ where: { userId: carol.id } })).toBe(0);
    });

    it("lists a user's audit events, newest first, admin actions with the acting key's name", async () => {
      const out = await rest(t.url, "GET", `/admin/users/${alice.id}/audit?limit=50`, { headers: bearer(OPS.key) });
      expect(out.status).toBe(200);
      expect(out.body["user_id"]).toBe(alice.id);
      const events = out.body["events"] as {
        type: string;
        at: string;
        user_agent?: string;
        detail?: Record<string, unknown>;
      }[];
      expect(events.map((e) => e.at)).toEqual([...events.map((e) => e.at)].sort().reverse());
      const actorOf = (type: string) => events.find((e) => e.type === type)?.detail?.["actor"];
      expect(actorOf("admin.user_disabled")).toBe("ops");
      expect(actorOf("admin.user_enabled")).toBe("oncall");
      expect(actorOf("admin.password_change_forced")).toBe("ops");
      expect(events.some((e) => e.type === "signin.succeeded")).toBe(true);
      expect(events.every((e) => e.user_agent !== "admin-cli")).toBe(true);

      const viaConnect = await admin.listAuditEvents(
        { userId: alice.email, limit: 2 },
        { headers: { "x-admin-key": ONCALL.key } },
      );
      expect(viaConnect.userId).toBe(alice.id);
      expect(viaConnect.events).toHaveLength(2);
      expect(viaConnect.events[0]?.type).toBe(events[0]?.type);
    });
  });
}

describe("admin API with no key configured", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ config: { dev: true } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("refuses every call with 403 admin_disabled, whatever is sent", async () => {
    const key = mintAdminKey().key;
    const variants: Record<string, string>[] = [{}, bearer(key), { "x-admin-key": key }];
    for (const headers of variants) {
      expect(await rest(t.url, "GET", "/admin/users", { headers })).toMatchObject({
        status: 403,
        body: { code: "admin_disabled", status: "permission_denied" },
      });
    }
    expect(await rest(t.url, "POST", "/admin/users/usr_x/disable", { headers: bearer(key), body: {} })).toMatchObject({
      status: 403,
      body: { code: "admin_disabled" },
    });
    const admin = createClient(AdminService, createConnectTransport({ baseUrl: t.url, httpVersion: "1.1" }));
    expect(await connectRefusal(admin.listUsers({}, { headers: bearer(key) }))).toEqual({
      code: Code.PermissionDenied,
      reason: "admin_disabled",
    });
  });
});
