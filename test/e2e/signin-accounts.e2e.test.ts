/**
 * How external identities map to local users, end to end: identity is (issuer, subject), e-mail
 * links only under the provider's explicit `verified` policy, and the signup policy is enforced.
 * Two real OpenID providers, so the identities really come from different issuers.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthService } from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { ErrorInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";
import { totpCode } from "../../src/tokens/totp.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { startTestOidcProvider, type TestOidcProvider } from "../support/oidc-provider.ts";
import {
  auditRowsOf,
  expectLogin,
  expectSnakeCaseLogin,
  newRequestId,
  restSignin,
  rowCounts,
  uniqueSub,
} from "../support/signin-e2e.ts";

describe("sign-in account mapping", () => {
  let acmeOp: TestOidcProvider;
  let otherOp: TestOidcProvider;
  let testApp: TestApp;
  let url: string;

  beforeAll(async () => {
    [acmeOp, otherOp] = await Promise.all([
      startTestOidcProvider(),
      startTestOidcProvider({ clientId: "other-client" }),
    ]);
    testApp = await startTestApp({
      config: {
        providers: {
          acme: { issuer: acmeOp.issuer, client_ids: [acmeOp.clientId], link_by_email: "verified" },
          // Same issuer behind two names with different policies: always named in requests here.
          strict: { issuer: otherOp.issuer, client_ids: [otherOp.clientId], link_by_email: "never" },
          closed: { issuer: otherOp.issuer, client_ids: [otherOp.clientId], signup: "deny", link_by_email: "never" },
        },
      },
    });
    url = testApp.url;
  });

  afterAll(async () => {
    await testApp?.close();
    await Promise.all([acmeOp?.close(), otherOp?.close()]);
  });

  const signin = async (
    op: TestOidcProvider,
    provider: string,
    claims: { sub: string; email?: string; emailVerified?: boolean },
  ) => {
    const { idToken } = await op.obtainIdToken(claims);
    const requestId = newRequestId();
    const res = await restSignin(url, { id_token: idToken, provider }, { requestId });
    return { ...res, requestId };
  };

  it("the same subject signs in to the same user, with a new session each time", async () => {
    const sub = uniqueSub("same");
    const first = await signin(acmeOp, "acme", { sub });
    expect(first.status).toBe(200);
    const before = await rowCounts(testApp.app);
    const second = await signin(acmeOp, "acme", { sub });
    expect(second.status).toBe(200);
    const after = await rowCounts(testApp.app);

    const a = expectSnakeCaseLogin(first.body);
    const b = expectSnakeCaseLogin(second.body);
    await expectLogin(url, b);
    expect(b.userId).toBe(a.userId);
    expect(b.refreshToken).not.toBe(a.refreshToken);
    expect(after).toEqual({
      ...before,
      sessions: before.sessions + 1,
      refreshTokens: before.refreshTokens + 1,
      auditEvents: before.auditEvents + 1,
    });
    const [audit] = await auditRowsOf(testApp.app, second.requestId);
    expect(audit).toMatchObject({
      type: "signin.succeeded",
      userId: a.userId,
      provider: "acme",
      issuer: acmeOp.issuer,
      subject: sub,
    });
    // The risk assessment rides along (its content is tested in mfa.e2e.test.ts).
    expect(JSON.parse(audit!.detail!)).toMatchObject({ account: "existing", risk: { decision: "allow" } });
  });

  it("a new subject with the same verified e-mail links to the existing user (link_by_email: verified)", async () => {
    const email = `${uniqueSub("link")}@example.com`;
    const first = await signin(acmeOp, "acme", { sub: uniqueSub("link-a"), email });
    expect(first.status).toBe(200);
    const owner = expectSnakeCaseLogin(first.body).userId;

    const before = await rowCounts(testApp.app);
    const sub = uniqueSub("link-b");
    const linked = await signin(acmeOp, "acme", { sub, email: email.toUpperCase() });
    expect(linked.status).toBe(200);
    // A link by e-mail to an account without a second factor is at least medium risk
    // (risk.email_link_min_level), so the user is told to enroll one (no_factor: deny_high_risk).
    const { mfa_check_reason: reason, ...login } = linked.body;
    expect(reason).toBe("mfa_enrollment_required");
    expect(linked.body["risk_level"]).toBe("medium");
    expect(linked.body["risk_assessment"]).toMatchObject({
      level: "medium",
      signals: ["new_identity_link"],
      require_mfa: true,
    });
    expect(expectSnakeCaseLogin(login).userId).toBe(owner);
    const after = await rowCounts(testApp.app);
    expect(after.users).toBe(before.users);
    expect(after.identities).toBe(before.identities + 1);
    const identities = await testApp.app.database.client.identity.findMany({ where: { userId: owner } });
    expect(identities.map((i) => i.subject)).toContain(sub);
    const rows = await auditRowsOf(testApp.app, linked.requestId);
    const audit = rows.find((r) => r.type === "signin.succeeded");
    // The risk assessment rides along (its content is tested in mfa.e2e.test.ts).
    expect(JSON.parse(audit!.detail!)).toMatchObject({
      account: "link",
      risk: { level: "medium", decision: "allow_unenrolled" },
    });
    // And the link has an event of its own, for whoever watches the trail.
    const link = rows.find((r) => r.type === "identity.linked_by_email");
    expect(link).toMatchObject({ userId: owner, provider: "acme", issuer: acmeOp.issuer, subject: sub });
    expect(JSON.parse(link!.detail!)).toEqual({ by: "verified_email", second_factor: "none", risk_level: "medium" });
  });

  it("a link by e-mail to an account with a second factor asks for that factor first; the link is written only after it", async () => {
    const email = `${uniqueSub("link-mfa")}@example.com`;
    const first = await signin(acmeOp, "acme", { sub: uniqueSub("link-mfa-a"), email });
    const owner = expectSnakeCaseLogin(first.body);
    const authed = (path: string, body: unknown) =>
      fetch(`${url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${owner.accessToken}` },
        body: JSON.stringify(body),
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, unknown> }));
    // The owner enrolls an authenticator right after signing in.
    const secret = (await authed("/auth/mfa/totp/enroll", {})).body["secret"] as string;
    const confirmed = await authed("/auth/mfa/totp/confirm", { code: totpCode(secret, new Date()) });
    expect(confirmed.status).toBe(200);
    const recovery = (confirmed.body["recovery_codes"] as string[])[0]!;

    const before = await rowCounts(testApp.app);
    const sub = uniqueSub("link-mfa-b");
    const linked = await signin(acmeOp, "acme", { sub, email });
    // Low risk otherwise, yet challenged: the link is what the factor protects.
    expect(linked.status).toBe(200);
    expect(linked.body).toMatchObject({ requires_mfa: true, mfa_check_reason: "new_identity_link" });
    expect(linked.body).not.toHaveProperty("access_token");
    expect(await rowCounts(testApp.app)).toMatchObject({ identities: before.identities, sessions: before.sessions });
    expect(await testApp.app.database.client.identity.count({ where: { subject: sub } })).toBe(0);

    const verified = await fetch(`${url}/auth/mfa/verify`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        challenge_token: linked.body["challenge_token"],
        method: "recovery_code",
        code: recovery,
      }),
    });
    expect(verified.status).toBe(200);
    const identity = await testApp.app.database.client.identity.findFirstOrThrow({ where: { subject: sub } });
    expect(identity.userId).toBe(owner.userId);
    const event = await testApp.app.database.client.auditEvent.findFirstOrThrow({
      where: { type: "identity.linked_by_email", subject: sub },
    });
    expect(event.userId).toBe(owner.userId);
    expect(JSON.parse(event.detail!)).toMatchObject({ by: "verified_email", second_factor: "recovery_code" });
    const completed = await testApp.app.database.client.auditEvent.findFirstOrThrow({
      where: { type: "signin.succeeded", userId: owner.userId },
      orderBy: { at: "desc" },
    });
    expect(JSON.parse(completed.detail!)).toMatchObject({ account: "link", mfa: { method: "recovery_code" } });
  });

  it("an unverified e-mail never links: it gets its own user", async () => {
    const email = `${uniqueSub("unverified")}@example.com`;
    const owner = expectSnakeCaseLogin((await signin(acmeOp, "acme", { sub: uniqueSub("uv-a"), email })).body).user!;
    const other = await signin(acmeOp, "acme", { sub: uniqueSub("uv-b"), email, emailVerified: false });
    expect(other.status).toBe(200);
    const login = expectSnakeCaseLogin(other.body);
    expect(login.userId).not.toBe(owner.id);
    // Both usernames derive from the same local part; the second one gets a suffix.
    expect(login.user!.username).not.toBe(owner.username);
    expect(login.user!.username.startsWith(`${owner.username}.`)).toBe(true);
  });

  it("a provider with link_by_email: never refuses a matching verified e-mail with account_exists, writing nothing", async () => {
    const email = `${uniqueSub("exists")}@example.com`;
    expect((await signin(acmeOp, "acme", { sub: uniqueSub("exists-a"), email })).status).toBe(200);

    const before = await rowCounts(testApp.app);
    const sub = uniqueSub("exists-b");
    const refused = await signin(otherOp, "strict", { sub, email });
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({
      code: "account_exists",
      status: "already_exists",
      details: { provider: "strict" },
    });
    expect(await rowCounts(testApp.app)).toEqual({ ...before, auditEvents: before.auditEvents + 1 });
    const [audit] = await auditRowsOf(testApp.app, refused.requestId);
    expect(audit).toMatchObject({
      type: "signin.failed",
      code: "account_exists",
      provider: "strict",
      issuer: otherOp.issuer,
      subject: sub,
    });

    // The same rejection over Connect carries the code as ErrorInfo.reason.
    const { idToken } = await otherOp.obtainIdToken({ sub, email });
    const client = createClient(AuthService, createConnectTransport({ baseUrl: url, httpVersion: "1.1" }));
    const error = await client
      .signinWithIdToken({ idToken, provider: "strict" })
      .catch((e: unknown) => ConnectError.from(e));
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.AlreadyExists);
    expect((error as ConnectError).findDetails(ErrorInfoSchema)[0]).toMatchObject({
      reason: "account_exists",
      domain: "identity.v1",
      metadata: { provider: "strict" },
    });
  });

  it("the same issuer and subject is one identity whatever provider name it comes through", async () => {
    const sub = uniqueSub("strict-first");
    const first = await signin(otherOp, "strict", { sub });
    expect(first.status).toBe(200);
    // `closed` denies signup, but this identity already exists, so it signs in.
    const again = await signin(otherOp, "closed", { sub });
    expect(again.status).toBe(200);
    expect(expectSnakeCaseLogin(again.body).userId).toBe(expectSnakeCaseLogin(first.body).userId);
  });

  it("signup: deny refuses a new subject with signup_disabled, writing nothing", async () => {
    const before = await rowCounts(testApp.app);
    const refused = await signin(otherOp, "closed", { sub: uniqueSub("closed") });
    expect(refused.status).toBe(403);
    expect(refused.body).toMatchObject({ code: "signup_disabled", status: "permission_denied" });
    expect(await rowCounts(testApp.app)).toEqual({ ...before, auditEvents: before.auditEvents + 1 });
    const [audit] = await auditRowsOf(testApp.app, refused.requestId);
    expect(audit).toMatchObject({ type: "signin.failed", code: "signup_disabled", provider: "closed" });
  });

  it("a disabled user gets no tokens (user_disabled), directly or through e-mail linking", async () => {
    const sub = uniqueSub("disabled");
    const email = `${sub}@example.com`;
    const first = await signin(acmeOp, "acme", { sub, email });
    const userId = expectSnakeCaseLogin(first.body).userId!;
    await testApp.app.database.client.user.update({ where: { id: userId }, data: { status: "disabled" } });

    const before = await rowCounts(testApp.app);
    const direct = await signin(acmeOp, "acme", { sub, email });
    expect(direct.status).toBe(403);
    expect(direct.body).toMatchObject({ code: "user_disabled", status: "permission_denied" });
    const viaLink = await signin(acmeOp, "acme", { sub: uniqueSub("disabled-link"), email });
    expect(viaLink.status).toBe(403);
    expect(viaLink.body["code"]).toBe("user_disabled");
    expect(await rowCounts(testApp.app)).toEqual({ ...before, auditEvents: before.auditEvents + 2 });
    const [audit] = await auditRowsOf(testApp.app, direct.requestId);
    expect(audit).toMatchObject({ type: "signin.failed", code: "user_disabled", userId, subject: sub });
  });
});
