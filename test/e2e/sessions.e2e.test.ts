import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";
import { AuthService } from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { UserService } from "../../gen/pb/identity/v1/user_service_pb.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { devIdToken } from "../support/signin-e2e.ts";
import { statusAndCode } from "../support/error-code.ts";

/** Token lifecycle over REST and Connect: refresh, current user, sessions, sign-out. */
describe("token lifecycle end to end", () => {
  let t: TestApp;
  const json = { "content-type": "application/json" };

  beforeAll(async () => {
    t = await startTestApp({ config: { dev: true } });
  });
  afterAll(async () => {
    await t?.close();
  });

  const FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
  const SAFARI_IPHONE =
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

  async function signin(sub: string, deviceId?: string, userAgent = "e2e-agent/1.0") {
    const idToken = await devIdToken(t.url, sub, { email: `${sub}@example.com` });
    const res = await fetch(`${t.url}/auth/id-token/signin`, {
      method: "POST",
      headers: { ...json, "user-agent": userAgent, ...(deviceId === undefined ? {} : { "x-device-id": deviceId }) },
      body: JSON.stringify({ id_token: idToken, provider: "dev" }),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as { access_token: string; refresh_token: string; user_id: string };
  }
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  it("GET /auth/me returns the User message for the access token", async () => {
    const login = await signin("me-user");
    const res = await fetch(`${t.url}/auth/me`, { headers: bearer(login.access_token) });
    expect(res.status).toBe(200);
    const user = (await res.json()) as Record<string, unknown>;
    expect(user).toMatchObject({
      id: login.user_id,
      email: "me-user@example.com",
      status: "active",
      must_change_password: false,
    });
    expect(user["created_at"]).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
  });

  it("refuses /auth/me without, or with a malformed or forged, access token", async () => {
    const login = await signin("me-refused");
    const cases: [Record<string, string>, string][] = [
      [{}, "access_token_required"],
      [{ authorization: "Basic abc" }, "access_token_invalid"],
      [bearer(`${login.access_token.slice(0, -6)}AAAAAA`), "access_token_invalid"],
    ];
    for (const [headers, code] of cases) {
      const res = await fetch(`${t.url}/auth/me`, { headers });
      expect(res.status).toBe(401);
      expect(((await res.json()) as { code: string }).code).toBe(code);
    }
  });

  it("POST /auth/token/refresh rotates; the spent token then revokes the session", async () => {
    const login = await signin("refresher");
    const r1 = await fetch(`${t.url}/auth/token/refresh`, {
      method: "POST",
      headers: json,
      body: JSON.stringify({ refresh_token: login.refresh_token }),
    });
    expect(r1.status).toBe(200);
    const rotated = (await r1.json()) as Record<string, unknown>;
    expect(rotated["refresh_token"]).not.toBe(login.refresh_token);
    expect(rotated).toMatchObject({
      token_type: "Bearer",
      expires_in: 1800,
      requires_mfa: false,
      user_id: login.user_id,
    });
    const reuse = await fetch(`${t.url}/auth/token/refresh`, {
      method: "POST",
      headers: json,
      body: JSON.stringify({ refresh_token: login.refresh_token }),
    });
    expect(reuse.status).toBe(401);
    expect(((await reuse.json()) as { code: string }).code).toBe("refresh_token_reused");
    const me = await fetch(`${t.url}/auth/me`, { headers: bearer(rotated["access_token"] as string) });
    expect(((await me.json()) as { code: string }).code).toBe("session_revoked");
  });

  it("lists sessions as a person recognises them, revokes one by id over REST, and signs out over Connect", async () => {
    const a = await signin("multi", "laptop-1-secret-device-id", FIREFOX_LINUX);
    const b = await signin("multi", "phone-1-secret-device-id", SAFARI_IPHONE);
    const list = await fetch(`${t.url}/auth/sessions`, { headers: bearer(b.access_token) });
    const text = await list.text();
    const { sessions } = JSON.parse(text) as { sessions: Record<string, unknown>[] };
    expect(sessions).toHaveLength(2);
    // Browser and OS family, first and last seen, address; no device identifier: the
    // device ids the clients sent appear nowhere in the answer.
    expect(sessions.find((s) => s["current"] === true)).toMatchObject({
      browser: "safari",
      os: "ios",
      ip: "127.0.0.1",
    });
    const laptop = sessions.find((s) => s["current"] !== true)!;
    expect(laptop).toMatchObject({ browser: "firefox", os: "linux", ip: "127.0.0.1", user_agent: FIREFOX_LINUX });
    expect(Object.keys(laptop).sort()).toEqual([
      "browser",
      "created_at",
      "current",
      "expires_at",
      "id",
      "ip",
      "last_used_at",
      "os",
      "provider",
      "user_agent",
    ]);
    expect(text).not.toMatch(/secret-device-id|device_id/);
    const connectList = await createClient(
      UserService,
      createConnectTransport({ baseUrl: t.url, httpVersion: "1.1" }),
    ).listSessions({}, { headers: bearer(b.access_token) });
    expect(connectList.sessions.map((s) => [s.browser, s.os]).sort()).toEqual([
      ["firefox", "linux"],
      ["safari", "ios"],
    ]);
    expect(JSON.stringify(connectList.sessions.map((s) => Object.values(s)))).not.toContain("secret-device-id");
    // Nor is it stored: the session rows hold no device id.
    const rows = await t.app.database.client.session.findMany({ where: { userId: a.user_id } });
    expect(rows).toHaveLength(2);
    expect(JSON.stringify(rows)).not.toContain("secret-device-id");

    const del = await fetch(`${t.url}/auth/sessions/${laptop["id"] as string}`, {
      method: "DELETE",
      headers: bearer(b.access_token),
    });
    expect(del.status).toBe(200);
    const gone = await fetch(`${t.url}/auth/token/refresh`, {
      method: "POST",
      headers: json,
      body: JSON.stringify({ refresh_token: a.refresh_token }),
    });
    expect(((await gone.json()) as { code: string }).code).toBe("session_revoked");
    const again = await fetch(`${t.url}/auth/sessions/${laptop["id"] as string}`, {
      method: "DELETE",
      headers: bearer(b.access_token),
    });
    expect(again.status).toBe(404);

    const transport = createConnectTransport({ baseUrl: t.url, httpVersion: "1.1" });
    const users = createClient(UserService, transport);
    const auth = createClient(AuthService, transport);
    const headers = bearer(b.access_token);
    expect((await users.getCurrentUser({}, { headers })).id).toBe(b.user_id);
    expect((await auth.signOut({ allSessions: false }, { headers })).revokedSessions).toBe(1);
    const err = await users.getCurrentUser({}, { headers }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Unauthenticated);
    expect((err as ConnectError).findDetails(ErrorInfoSchema)[0]?.reason).toBe("session_revoked");
  });

  it("signs out with a refresh token only its own live session; a dead one changes nothing but reuse", async () => {
    const a = await signin("everywhere");
    const b = await signin("everywhere");
    const live = () => t.app.database.client.session.count({ where: { userId: a.user_id, revokedAt: null } });
    const signout = (body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${t.url}/auth/signout`, { method: "POST", headers: { ...json, ...headers }, body: JSON.stringify(body) });

    // all_sessions needs the access token: a refresh token alone ends nothing.
    expect(await statusAndCode(await signout({ refresh_token: a.refresh_token, all_sessions: true }))).toEqual({
      status: 401,
      code: "access_token_required",
    });
    expect(await live()).toBe(2);

    // A spent (rotated) token: reuse detection ends that session, never the others.
    const rotated = await fetch(`${t.url}/auth/token/refresh`, {
      method: "POST",
      headers: json,
      body: JSON.stringify({ refresh_token: a.refresh_token }),
    });
    expect(rotated.status).toBe(200);
    expect(await statusAndCode(await signout({ refresh_token: a.refresh_token }))).toEqual({
      status: 401,
      code: "refresh_token_reused",
    });
    expect(await live()).toBe(1);

    // The token of a signed-out session: refused, nothing else happens.
    const c = await signin("everywhere");
    expect((await signout({ refresh_token: c.refresh_token })).status).toBe(200);
    expect(await statusAndCode(await signout({ refresh_token: c.refresh_token }))).toEqual({
      status: 401,
      code: "session_revoked",
    });
    expect(await live()).toBe(1);

    // The access token may end them all.
    const all = await signout({ all_sessions: true }, bearer(b.access_token));
    expect(((await all.json()) as { revoked_sessions: number }).revoked_sessions).toBe(1);
    expect(await live()).toBe(0);
    const bad = await fetch(`${t.url}/auth/signout`, { method: "POST", headers: json, body: "{}" });
    expect(bad.status).toBe(401);
  });
});
