/**
 * Account status end to end, on every database: each non-active status refuses sign-in and
 * refresh with its own code and HTTP status, writing nothing but the audit record; an expired lock
 * lets the user back in; disabling (through the admin service) ends every session and refresh
 * token in the same transaction.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdminTool, type AdminTool } from "../../src/app/admin.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { testDatabaseKinds } from "../support/databases.ts";
import { auditRowsOf, devIdToken, newRequestId, restSignin, rowCounts, uniqueSub } from "../support/signin-e2e.ts";

async function post(url: string, path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

for (const kind of testDatabaseKinds()) {
  describe(`account status on ${kind.dialect}`, kind.suiteOptions, () => {
    let t: TestApp;
    let tool: AdminTool;

    beforeAll(async () => {
      t = await startTestApp({ kind, config: { dev: true } });
      tool = await createAdminTool(t.app.config, { actor: "e2e-operator" });
    });
    afterAll(async () => {
      await tool?.close();
      await t?.close();
    });

    const idToken = (sub: string) => devIdToken(t.url, sub, { email: `${sub}@example.com`, email_verified: true });
    /** A user signed in once; returns its id and the login's tokens. */
    const signedIn = async (label: string) => {
      const sub = uniqueSub(label);
      const res = await restSignin(t.url, { id_token: await idToken(sub), provider: "dev" });
      expect(res.status).toBe(200);
      return {
        sub,
        userId: res.body["user_id"] as string,
        refreshToken: res.body["refresh_token"] as string,
        accessToken: res.body["access_token"] as string,
      };
    };
    const setStatus = (userId: string, status: string, lockedUntil: Date | null = null) =>
      t.app.database.client.user.update({ where: { id: userId }, data: { status, lockedUntil } });

    const refuses = [
      { status: "disabled", lockedUntil: null, code: "user_disabled" },
      { status: "locked", lockedUntil: null, code: "user_locked" },
      { status: "locked", lockedUntil: new Date(Date.now() + 3600_000), code: "user_locked" },
      { status: "pending", lockedUntil: null, code: "user_pending" },
    ] as const;

    for (const c of refuses) {
      const name = `${c.status}${c.lockedUntil === null ? "" : " (with an end)"}`;
      it(`${name}: sign-in and refresh answer 403 ${c.code}; only the audit record is written`, async () => {
        const u = await signedIn(c.status);
        await setStatus(u.userId, c.status, c.lockedUntil);
        const before = await rowCounts(t.app);

        const requestId = newRequestId();
        const res = await restSignin(t.url, { id_token: await idToken(u.sub), provider: "dev" }, { requestId });
        expect(res.status).toBe(403);
        expect(res.body).toMatchObject({ code: c.code, status: "permission_denied" });
        if (c.lockedUntil !== null) expect(res.body["details"]).toEqual({ locked_until: c.lockedUntil.toISOString() });
        else expect(res.body["details"]).toBeUndefined();
        expect(await rowCounts(t.app)).toEqual({ ...before, auditEvents: before.auditEvents + 1 });
        const [audit] = await auditRowsOf(t.app, requestId);
        expect(audit).toMatchObject({ type: "signin.failed", code: c.code, userId: u.userId });

        const refreshId = newRequestId();
        const refreshed = await post(
          t.url,
          "/auth/token/refresh",
          { refresh_token: u.refreshToken },
          { "x-request-id": refreshId },
        );
        expect(refreshed.status).toBe(403);
        expect(refreshed.body["code"]).toBe(c.code);
        expect(await rowCounts(t.app)).toEqual({ ...before, auditEvents: before.auditEvents + 2 });
        expect((await auditRowsOf(t.app, refreshId))[0]).toMatchObject({ type: "token.refresh_failed", code: c.code });
        const db = t.app.database.client;
        expect((await db.session.findFirstOrThrow({ where: { userId: u.userId } })).revokedAt).toBeNull();
        // The refused token was not spent: it is not "reused" when presented again.
        expect(
          (await db.refreshToken.findFirstOrThrow({ where: { session: { userId: u.userId } } })).usedAt,
        ).toBeNull();
        expect((await post(t.url, "/auth/token/refresh", { refresh_token: u.refreshToken })).body["code"]).toBe(c.code);

        if (c.lockedUntil !== null) {
          // Regression: a refused refresh used to spend the token, so after the lock ended the
          // same token counted as reuse and revoked the session.
          await setStatus(u.userId, "locked", new Date(Date.now() - 1));
          const after = await post(t.url, "/auth/token/refresh", { refresh_token: u.refreshToken });
          expect(after.status).toBe(200);
          expect(after.body["refresh_token"]).not.toBe(u.refreshToken);
        }
      });
    }

    it("a lock whose end has passed lets the user sign in and refresh again", async () => {
      const u = await signedIn("lock-over");
      await setStatus(u.userId, "locked", new Date(Date.now() - 1000));
      const res = await restSignin(t.url, { id_token: await idToken(u.sub), provider: "dev" });
      expect(res.status).toBe(200);
      expect((res.body["user"] as Record<string, unknown>)["status"]).toBe("locked");
      expect((await post(t.url, "/auth/token/refresh", { refresh_token: u.refreshToken })).status).toBe(200);
    });

    it("disabling ends every session and refresh token at once; enabling lets the user sign in again", async () => {
      const u = await signedIn("disable");
      const second = await restSignin(t.url, { id_token: await idToken(u.sub), provider: "dev" });
      expect(second.status).toBe(200);
      expect((await fetch(`${t.url}/auth/me`, { headers: { authorization: `Bearer ${u.accessToken}` } })).status).toBe(
        200,
      );

      const result = await tool.admin.disable(u.userId, { reason: "left the company" });
      expect(result).toMatchObject({ previousStatus: "active", changed: true, revokedSessions: 2 });
      const db = t.app.database.client;
      const sessions = await db.session.findMany({ where: { userId: u.userId } });
      expect(sessions.map((s) => s.revokedReason)).toEqual(["user_disabled", "user_disabled"]);
      // One instant for all: the status change and the revocations were one transaction.
      expect(new Set(sessions.map((s) => s.revokedAt?.getTime())).size).toBe(1);
      const audit = await db.auditEvent.findFirstOrThrow({ where: { userId: u.userId, type: "admin.user_disabled" } });
      expect(JSON.parse(audit.detail!)).toEqual({
        actor: "e2e-operator",
        previous_status: "active",
        revoked_sessions: 2,
      });
      expect((await db.user.findUniqueOrThrow({ where: { id: u.userId } })).statusReason).toBe("left the company");

      // The refresh token tells the client why (not just "signed out"); the access token is dead here.
      const refreshed = await post(t.url, "/auth/token/refresh", { refresh_token: second.body["refresh_token"] });
      expect(refreshed).toMatchObject({ status: 403, body: { code: "user_disabled" } });
      const me = await fetch(`${t.url}/auth/me`, { headers: { authorization: `Bearer ${u.accessToken}` } });
      expect(me.status).toBe(401);
      expect(((await me.json()) as Record<string, unknown>)["code"]).toBe("session_revoked");

      expect(await tool.admin.enable(u.userId)).toMatchObject({
        previousStatus: "disabled",
        changed: true,
        revokedSessions: 0,
      });
      expect((await restSignin(t.url, { id_token: await idToken(u.sub), provider: "dev" })).status).toBe(200);
    });
  });
}
