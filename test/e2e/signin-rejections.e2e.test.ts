/**
 * Every way a sign-in is refused, end to end: the HTTP status and stable `code` a REST caller
 * sees (and the Connect code + ErrorInfo reason for several), and that nothing was written:
 * no user, identity, session or refresh token. Refusals that reach the sign-in core leave exactly
 * one `signin.failed` audit row with the code and never the token; requests refused by the HTTP
 * layer (content type, size, JSON) never reach it and leave no row at all.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthService } from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { ErrorInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { startTestOidcProvider, type TestOidcProvider } from "../support/oidc-provider.ts";
import {
  auditRowsOf,
  createMovableClock,
  createTokenSigner,
  newRequestId,
  restSignin,
  type RestResult,
  rowCounts,
  tamperSignature,
  uniqueSub,
} from "../support/signin-e2e.ts";

/** Nothing listens on port 1: connections are refused at once. */
const DEAD_ISSUER = "http://127.0.0.1:1";

describe("sign-in rejections write nothing", () => {
  let op: TestOidcProvider;
  let testApp: TestApp;
  let url: string;
  const clock = createMovableClock();

  beforeAll(async () => {
    op = await startTestOidcProvider();
    testApp = await startTestApp({
      overrides: { clock },
      config: {
        providers: {
          acme: { issuer: op.issuer, client_ids: [op.clientId], link_by_email: "verified" },
          // Same issuer, but our client ID there is another one: acme's tokens are not for it.
          "acme-ios": { issuer: op.issuer, client_ids: ["ios-client"] },
          down: { issuer: DEAD_ISSUER, client_ids: ["down-client"], http_timeout_ms: 1000 },
        },
      },
    });
    url = testApp.url;
  });

  afterAll(async () => {
    await testApp?.close();
    await op?.close();
  });

  const genuineToken = async (label = "reject") => (await op.obtainIdToken({ sub: uniqueSub(label) })).idToken;

  /**
   * Runs `send` and asserts the refusal: REST status and code, nothing written, and (when the
   * core saw it) one signin.failed audit row with the code, free of the token.
   */
  async function expectRefused(
    send: (requestId: string) => Promise<RestResult>,
    expected: { status: number; code: string; audited: boolean; token?: string; provider?: string },
  ): Promise<RestResult> {
    const before = await rowCounts(testApp.app);
    const requestId = newRequestId();
    const res = await send(requestId);
    expect({ status: res.status, code: res.body["code"] }).toEqual({ status: expected.status, code: expected.code });
    expect(res.body["message"]).toEqual(expect.any(String));
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const after = await rowCounts(testApp.app);
    expect(after).toEqual({ ...before, auditEvents: before.auditEvents + (expected.audited ? 1 : 0) });

    const audits = await auditRowsOf(testApp.app, requestId);
    if (!expected.audited) {
      expect(audits).toEqual([]);
      return res;
    }
    expect(audits).toHaveLength(1);
    const audit = audits[0]!;
    expect(audit).toMatchObject({ type: "signin.failed", code: expected.code, requestId, ip: "127.0.0.1" });
    if (expected.provider !== undefined) expect(audit.provider).toBe(expected.provider);
    if (expected.token !== undefined) {
      const row = JSON.stringify(audit);
      for (const part of expected.token.split(".")) expect(row).not.toContain(part);
    }
    return res;
  }

  const rest = (body: unknown, headers?: Record<string, string>) => (requestId: string) =>
    restSignin(url, body, { requestId, ...(headers === undefined ? {} : { headers }) });

  it("missing id_token: 400 id_token_required", async () => {
    await expectRefused(rest({ provider: "acme" }), {
      status: 400,
      code: "id_token_required",
      audited: true,
      provider: "acme",
    });
  });

  it("garbage id_token: 400 id_token_malformed", async () => {
    await expectRefused(rest({ id_token: "definitely-not-a-jwt", provider: "acme" }), {
      status: 400,
      code: "id_token_malformed",
      audited: true,
      token: "definitely-not-a-jwt",
    });
  });

  it("a JWS whose header is not JSON: 400 id_token_malformed", async () => {
    const token = `${Buffer.from("not json").toString("base64url")}.e30.c2ln`;
    await expectRefused(rest({ id_token: token, provider: "acme" }), {
      status: 400,
      code: "id_token_malformed",
      audited: true,
    });
  });

  it("an id_token over the size cap: 400 id_token_too_large", async () => {
    const token = `${"a".repeat(17 * 1024)}.b.c`;
    await expectRefused(rest({ id_token: token, provider: "acme" }), {
      status: 400,
      code: "id_token_too_large",
      audited: true,
    });
  });

  it("unknown provider: 404 provider_unknown (a genuine token, before any network I/O)", async () => {
    const token = await genuineToken();
    await expectRefused(rest({ id_token: token, provider: "nope" }), {
      status: 404,
      code: "provider_unknown",
      audited: true,
      token,
      provider: "nope",
    });
  });

  it("no provider named and an issuer nobody configured: 401 issuer_untrusted", async () => {
    const signer = await createTokenSigner();
    const token = await signer.sign({ iss: "https://evil.example", aud: op.clientId, sub: "mallory" });
    await expectRefused(rest({ id_token: token }), { status: 401, code: "issuer_untrusted", audited: true, token });
  });

  it("a token for another audience: 401 id_token_audience_mismatch", async () => {
    const token = await genuineToken("audience");
    const res = await expectRefused(rest({ id_token: token, provider: "acme-ios" }), {
      status: 401,
      code: "id_token_audience_mismatch",
      audited: true,
      token,
      provider: "acme-ios",
    });
    expect(res.body["status"]).toBe("unauthenticated");
  });

  it("a tampered signature: 401 id_token_signature_invalid", async () => {
    const tampered = tamperSignature(await genuineToken("tamper"));
    await expectRefused(rest({ id_token: tampered, provider: "acme" }), {
      status: 401,
      code: "id_token_signature_invalid",
      audited: true,
      token: tampered,
    });
  });

  it("a tampered payload (sub swapped, signature kept): 401 id_token_signature_invalid", async () => {
    const token = await genuineToken("swap");
    const [h, , s] = token.split(".");
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...decodeJwt(token), sub: "admin" })).toString("base64url")}.${s}`;
    await expectRefused(rest({ id_token: forged, provider: "acme" }), {
      status: 401,
      code: "id_token_signature_invalid",
      audited: true,
    });
  });

  it("an algorithm the provider is not pinned to: 401 id_token_algorithm_not_allowed", async () => {
    const signer = await createTokenSigner("ES256");
    const token = await signer.sign({ iss: op.issuer, aud: op.clientId, sub: "es256" });
    await expectRefused(rest({ id_token: token, provider: "acme" }), {
      status: 401,
      code: "id_token_algorithm_not_allowed",
      audited: true,
    });
  });

  it("a signing key the provider never published: 401 id_token_key_not_found", async () => {
    const signer = await createTokenSigner("RS256");
    const token = await signer.sign({ iss: op.issuer, aud: op.clientId, sub: "forger" });
    await expectRefused(rest({ id_token: token, provider: "acme" }), {
      status: 401,
      code: "id_token_key_not_found",
      audited: true,
    });
  });

  it("a nonce that does not match: 401 id_token_nonce_mismatch", async () => {
    const token = await genuineToken("nonce");
    await expectRefused(rest({ id_token: token, provider: "acme", nonce: "not-the-nonce" }), {
      status: 401,
      code: "id_token_nonce_mismatch",
      audited: true,
    });
  });

  it("an expired token (server clock two hours on): 401 id_token_expired", async () => {
    const token = await genuineToken("expired");
    clock.advance(2 * 3600 * 1000);
    try {
      await expectRefused(rest({ id_token: token, provider: "acme" }), {
        status: 401,
        code: "id_token_expired",
        audited: true,
        token,
      });
      // Connect says the same with Unauthenticated + ErrorInfo.
      const client = createClient(AuthService, createConnectTransport({ baseUrl: url, httpVersion: "1.1" }));
      const error = await client
        .signinWithIdToken({ idToken: token, provider: "acme" })
        .catch((e: unknown) => ConnectError.from(e));
      expect(error).toBeInstanceOf(ConnectError);
      expect((error as ConnectError).code).toBe(Code.Unauthenticated);
      expect((error as ConnectError).findDetails(ErrorInfoSchema)[0]?.reason).toBe("id_token_expired");
    } finally {
      clock.reset();
    }
  });

  it("an unreachable provider: 503 provider_unavailable, promptly", async () => {
    const signer = await createTokenSigner();
    const token = await signer.sign({ iss: DEAD_ISSUER, aud: "down-client", sub: "someone" });
    const started = performance.now();
    await expectRefused(rest({ id_token: token, provider: "down" }), {
      status: 503,
      code: "provider_unavailable",
      audited: true,
      token,
      provider: "down",
    });
    expect(performance.now() - started).toBeLessThan(5000);

    const client = createClient(AuthService, createConnectTransport({ baseUrl: url, httpVersion: "1.1" }));
    const error = await client
      .signinWithIdToken({ idToken: token, provider: "down" })
      .catch((e: unknown) => ConnectError.from(e));
    expect((error as ConnectError).code).toBe(Code.Unavailable);
    expect((error as ConnectError).findDetails(ErrorInfoSchema)[0]?.reason).toBe("provider_unavailable");
  });

  it("a disabled user: 403 user_disabled", async () => {
    const sub = uniqueSub("disabled");
    const { idToken } = await op.obtainIdToken({ sub });
    const ok = await restSignin(url, { id_token: idToken, provider: "acme" });
    expect(ok.status).toBe(200);
    await testApp.app.database.client.user.update({
      where: { id: ok.body["user_id"] as string },
      data: { status: "disabled" },
    });
    const again = (await op.obtainIdToken({ sub })).idToken;
    const res = await expectRefused(rest({ id_token: again, provider: "acme" }), {
      status: 403,
      code: "user_disabled",
      audited: true,
      token: again,
      provider: "acme",
    });
    expect(res.body["status"]).toBe("permission_denied");

    const client = createClient(AuthService, createConnectTransport({ baseUrl: url, httpVersion: "1.1" }));
    const error = await client
      .signinWithIdToken({ idToken: again, provider: "acme" })
      .catch((e: unknown) => ConnectError.from(e));
    expect((error as ConnectError).code).toBe(Code.PermissionDenied);
    expect((error as ConnectError).findDetails(ErrorInfoSchema)[0]?.reason).toBe("user_disabled");
  });

  describe("refused by the HTTP layer, before the sign-in core", () => {
    it("a content type other than JSON: 415 unsupported_media_type", async () => {
      const token = await genuineToken("ctype");
      await expectRefused(
        rest(JSON.stringify({ id_token: token, provider: "acme" }), { "content-type": "text/plain" }),
        {
          status: 415,
          code: "unsupported_media_type",
          audited: false,
        },
      );
    });

    it("a body over server.body_limit_bytes: 413 request_too_large", async () => {
      await expectRefused(rest({ id_token: "x".repeat(70 * 1024), provider: "acme" }), {
        status: 413,
        code: "request_too_large",
        audited: false,
      });
    });

    it("a body that is not JSON: 400 invalid_request", async () => {
      await expectRefused(rest("{ this is not json"), { status: 400, code: "invalid_request", audited: false });
    });

    it("a JSON body that is not an object: 400 invalid_request", async () => {
      await expectRefused(rest("[1, 2]"), { status: 400, code: "invalid_request", audited: false });
    });

    it("an unknown JSON field: 400 invalid_request", async () => {
      const token = await genuineToken("unknown-field");
      const res = await expectRefused(rest({ id_token: token, provider: "acme", surprise: true }), {
        status: 400,
        code: "invalid_request",
        audited: false,
      });
      expect(res.body["status"]).toBe("invalid_argument");
    });

    it("the wrong method on the REST path: 405 method_not_allowed", async () => {
      const res = await fetch(`${url}/auth/id-token/signin`);
      const body = (await res.json()) as Record<string, unknown>;
      expect(body["code"]).toBe("method_not_allowed");
      expect(res.status).toBe(405);
    });

    it("an unknown path: 404 not_found", async () => {
      const res = await fetch(`${url}/auth/nothing-here`, { method: "POST" });
      expect(res.status).toBe(404);
      expect(((await res.json()) as Record<string, unknown>)["code"]).toBe("not_found");
    });
  });
});
