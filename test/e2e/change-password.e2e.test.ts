/**
 * Local passwords end to end over REST (and once over Connect): an SSO-only user sets a first
 * password, the rules refuse wrong, weak and reused ones with stable codes, a change clears an
 * operator's forced change, and the password fields then appear identically at the top level of
 * every LoginResponse (sign-in, refresh) and inside `user`, and in GetCurrentUser, as the clock
 * moves through the warning window, expiry, grace and beyond.
 */
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UserService } from "../../gen/pb/identity/v1/user_service_pb.ts";
import { createAdminTool, type AdminTool } from "../../src/app/admin.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { createMovableClock, devIdToken, restSignin, uniqueSub } from "../support/signin-e2e.ts";

const DAY = 86_400_000;

describe("ChangePassword and the password fields", () => {
  const clock = createMovableClock();
  let t: TestApp;
  let tool: AdminTool;

  beforeAll(async () => {
    t = await startTestApp({
      config: { dev: true, password: { max_age_days: 30, warning_days: 7, grace_days: 3 } },
      overrides: { clock },
    });
    tool = await createAdminTool(t.app.config, { actor: "e2e", clock });
  });
  afterAll(async () => {
    await tool?.close();
    await t?.close();
  });

  async function call(method: "GET" | "POST", path: string, body?: unknown, token?: string) {
    const res = await fetch(`${t.url}${path}`, {
      method,
      headers: {
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }
  async function signin(sub: string) {
    const idToken = await devIdToken(t.url, sub, { email: `${sub}@example.com`, email_verified: true });
    const res = await restSignin(t.url, { id_token: idToken, provider: "dev" });
    expect(res.status).toBe(200);
    return res.body;
  }
  const change = (token: string, body: Record<string, unknown>) => call("POST", "/auth/password/change", body, token);

  /** The three password fields, top level and in `user`, must agree; returns them. */
  function passwordFields(login: Record<string, unknown>) {
    const pick = (o: Record<string, unknown>) => ({
      must_change_password: o["must_change_password"],
      ...("password_expires_in" in o ? { password_expires_in: o["password_expires_in"] } : {}),
      ...("password_warning" in o ? { password_warning: o["password_warning"] } : {}),
    });
    const top = pick(login);
    expect(pick(login["user"] as Record<string, unknown>)).toEqual(top);
    return top;
  }

  it("an SSO-only user has no password fields but must_change_password", async () => {
    const login = await signin(uniqueSub("sso"));
    expect(passwordFields(login)).toEqual({ must_change_password: false });
    const me = await call("GET", "/auth/me", undefined, login["access_token"] as string);
    expect(me.body).toMatchObject({ must_change_password: false });
    expect(me.body).not.toHaveProperty("password_expires_in");
  });

  it("needs the access token", async () => {
    const res = await call("POST", "/auth/password/change", { new_password: "a fine passphrase here" });
    expect(res).toMatchObject({ status: 401, body: { code: "access_token_required" } });
  });

  it("sets a first password, refusing weak ones; then requires, checks and differs from the current one", async () => {
    const sub = uniqueSub("first");
    const other = await signin(sub);
    const login = await signin(sub);
    const token = login["access_token"] as string;
    const userId = login["user_id"] as string;

    const weak = await change(token, { new_password: `${sub}-secret` });
    expect(weak).toMatchObject({
      status: 400,
      body: { code: "password_too_weak", details: { reason: "contains_user_info" } },
    });
    expect(await change(token, { new_password: "short" })).toMatchObject({
      status: 400,
      body: { code: "password_too_weak", details: { reason: "too_short", min_length: "12", max_length: "128" } },
    });
    expect((await change(token, { new_password: "Password2024!" })).body["details"]).toMatchObject({
      reason: "common",
    });
    expect(
      await change(token, { current_password: "I have none", new_password: "violet lanterns drift" }),
    ).toMatchObject({
      status: 400,
      body: { code: "invalid_request" },
    });

    const first = await change(token, { new_password: "violet lanterns drift" });
    expect(first.status).toBe(200);
    expect(first.body).toEqual({
      user: expect.objectContaining({ id: userId, must_change_password: false, password_expires_in: 30 }),
      revoked_sessions: 1,
    });
    // Stored as Argon2id only; the other session ended; the audit trail has no password.
    const db = t.app.database.client;
    const credential = await db.passwordCredential.findUniqueOrThrow({ where: { userId } });
    expect(credential.hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(credential.changedAt.getTime()).toBe(credential.createdAt.getTime());
    const refreshOther = await call("POST", "/auth/token/refresh", { refresh_token: other["refresh_token"] });
    expect(refreshOther).toMatchObject({ status: 401, body: { code: "session_revoked" } });
    const events = await db.auditEvent.findMany({
      where: { userId, type: { startsWith: "password." } },
      orderBy: { at: "asc" },
    });
    expect(events.map((e) => [e.type, e.code])).toEqual([
      ["password.change_failed", "password_too_weak"],
      ["password.change_failed", "password_too_weak"],
      ["password.change_failed", "password_too_weak"],
      ["password.change_failed", "invalid_request"],
      ["password.changed", null],
    ]);
    expect(JSON.parse(events.at(-1)!.detail!)).toMatchObject({ first_password: true, revoked_sessions: 1 });
    expect(JSON.stringify(events)).not.toMatch(/violet|lanterns/);

    expect(await change(token, { new_password: "another fine passphrase" })).toMatchObject({
      status: 400,
      body: { code: "current_password_required" },
    });
    expect(
      await change(token, { current_password: "violet lanterns drif", new_password: "another fine passphrase" }),
    ).toMatchObject({
      status: 403,
      body: { code: "password_incorrect", status: "permission_denied" },
    });
    expect(
      await change(token, { current_password: "violet lanterns drift", new_password: "violet lanterns drift" }),
    ).toMatchObject({
      status: 400,
      body: { code: "password_reused" },
    });
    const second = await change(token, {
      current_password: "violet lanterns drift",
      new_password: "another fine passphrase",
    });
    expect(second).toMatchObject({ status: 200, body: { revoked_sessions: 0 } });
    expect((await db.passwordCredential.findUniqueOrThrow({ where: { userId } })).hash).not.toBe(credential.hash);
  });

  it("a first password needs a recent sign-in", async () => {
    const login = await signin(uniqueSub("stale"));
    clock.advance(11 * 60_000);
    try {
      const res = await change(login["access_token"] as string, { new_password: "violet lanterns drift" });
      expect(res).toMatchObject({
        status: 403,
        body: { code: "reauthentication_required", details: { max_signin_age_seconds: "600" } },
      });
    } finally {
      clock.reset();
    }
  });

  it("throttles wrong current passwords", async () => {
    const sub = uniqueSub("throttle");
    const token = (await signin(sub))["access_token"] as string;
    expect((await change(token, { new_password: "violet lanterns drift" })).status).toBe(200);
    for (let i = 0; i < 5; i++) {
      expect(
        (await change(token, { current_password: `wrong ${i}`, new_password: "another fine passphrase" })).body["code"],
      ).toBe("password_incorrect");
    }
    const limited = await change(token, {
      current_password: "violet lanterns drift",
      new_password: "another fine passphrase",
    });
    expect(limited).toMatchObject({ status: 429, body: { code: "rate_limited" } });
    const retry = Number((limited.body["details"] as Record<string, string>)["retry_after_seconds"]);
    expect(retry).toBeGreaterThan(800); // the failures just happened: nearly the whole 900 s window
    expect(retry).toBeLessThanOrEqual(900);
  });

  it("works over Connect too", async () => {
    const login = await signin(uniqueSub("connect"));
    const client = createClient(UserService, createConnectTransport({ baseUrl: t.url, httpVersion: "1.1" }));
    const res = await client.changePassword(
      { newPassword: "violet lanterns drift" },
      { headers: { authorization: `Bearer ${login["access_token"] as string}` } },
    );
    expect(res.user?.passwordExpiresIn).toBe(30);
    expect(res.user?.mustChangePassword).toBe(false);
  });

  it("carries the fields through a forced change, the warning window, expiry, grace and after, on every path", async () => {
    const sub = uniqueSub("expiry");
    const start = await signin(sub);
    expect((await change(start["access_token"] as string, { new_password: "violet lanterns drift" })).status).toBe(200);

    // An operator forces a change: every path says so, until the user changes it.
    await tool.admin.forcePasswordChange(start["user_id"] as string);
    const forced = await signin(sub);
    expect(passwordFields(forced)).toEqual({ must_change_password: true, password_expires_in: 30 });
    const refreshed = await call("POST", "/auth/token/refresh", { refresh_token: forced["refresh_token"] });
    expect(passwordFields(refreshed.body)).toEqual({ must_change_password: true, password_expires_in: 30 });
    const done = await change(forced["access_token"] as string, {
      current_password: "violet lanterns drift",
      new_password: "another fine passphrase",
    });
    expect(done.body["user"]).toMatchObject({ must_change_password: false, password_expires_in: 30 });
    expect(passwordFields(await signin(sub))).toEqual({ must_change_password: false, password_expires_in: 30 });

    const expect_at = async (offsetDays: number, fields: Record<string, unknown>) => {
      clock.reset();
      clock.advance(offsetDays * DAY);
      const login = await signin(sub);
      expect(passwordFields(login), `day ${offsetDays}`).toEqual(fields);
      const refreshed = await call("POST", "/auth/token/refresh", { refresh_token: login["refresh_token"] });
      expect(passwordFields(refreshed.body), `refresh, day ${offsetDays}`).toEqual(fields);
      const me = await call("GET", "/auth/me", undefined, refreshed.body["access_token"] as string);
      expect(me.body).toMatchObject(fields);
    };
    try {
      await expect_at(22.9, { must_change_password: false, password_expires_in: 8 });
      await expect_at(23.5, { must_change_password: false, password_expires_in: 7, password_warning: "expiring" });
      await expect_at(29.5, { must_change_password: false, password_expires_in: 1, password_warning: "expiring" });
      await expect_at(30.5, { must_change_password: false, password_expires_in: 0, password_warning: "expired_grace" });
      await expect_at(32.5, {
        must_change_password: false,
        password_expires_in: -2,
        password_warning: "expired_grace",
      });
      await expect_at(33.5, { must_change_password: true, password_expires_in: -3, password_warning: "expired" });
      // Changing the expired password restarts the clock.
      const login = await signin(sub);
      const renewed = await change(login["access_token"] as string, {
        current_password: "another fine passphrase",
        new_password: "a third passphrase, finally",
      });
      expect(renewed.body["user"]).toMatchObject({ must_change_password: false, password_expires_in: 30 });
      expect(renewed.body["user"]).not.toHaveProperty("password_warning");
    } finally {
      clock.reset();
    }
  });
});
