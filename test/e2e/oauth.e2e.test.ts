/**
 * The OAuth 2.0 door end to end, with `openid-client` as the real client: discovery (OpenID and
 * RFC 8414), token exchange and JWT bearer with the dev issuer's ID tokens, refresh with reuse
 * detection, MFA completion, revocation, introspection, and every RFC 6749 §5.2 error shape.
 * Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.
 */
import { createHash } from "node:crypto";
import { createRemoteJWKSet, decodeJwt, exportJWK, generateKeyPair, jwtVerify, SignJWT } from "jose";
import * as oidc from "openid-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { totpCode } from "../../src/tokens/totp.ts";
import { markdownSnippet, shellCommands } from "../support/docs.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { postgresKind, testDatabaseKinds } from "../support/databases.ts";
import { createMovableClock, devIdToken, LOCAL_ISSUER, uniqueSub } from "../support/signin-e2e.ts";

const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const MFA_GRANT = "urn:identity:params:oauth:grant-type:mfa";
const ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token";
const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";
const BACKEND_SECRET = "backend-secret-0123456789abcdefghijklmnopqrstuv";
const POSTER_SECRET = "poster-secret-0123456789abcdefghijklmnopqrstuvw";
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

for (const kind of testDatabaseKinds()) {
  describe(`OAuth 2.0 endpoints with openid-client (${kind.dialect})`, () => {
    let t: TestApp;
    const clock = createMovableClock();
    /** Sent as X-Device-Id on every openid-client request (the device the risk assessment sees). */
    let device = "oauth-device";

    /** openid-client's fetch: the issuer (https://identity.test) is served by the test server. */
    const fetchVia: oidc.CustomFetch = (url, options) => {
      const target = url.startsWith(LOCAL_ISSUER) ? `${t.url}${url.slice(LOCAL_ISSUER.length)}` : url;
      return fetch(target, {
        ...options,
        headers: { ...(options.headers as Record<string, string>), "x-device-id": device },
      } as RequestInit);
    };

    async function discover(
      clientId: string,
      auth: oidc.ClientAuth,
      algorithm: "oidc" | "oauth2" = "oidc",
    ): Promise<oidc.Configuration> {
      const config = await oidc.discovery(new URL(LOCAL_ISSUER), clientId, undefined, auth, {
        algorithm,
        execute: [oidc.allowInsecureRequests],
        [oidc.customFetch]: fetchVia,
      });
      return config;
    }

    const mint = (sub: string) => devIdToken(t.url, sub, { email: `${sub}@example.com` });

    /** The RFC error openid-client surfaced: its `error`, HTTP status and whole JSON body. */
    async function rejection(
      p: Promise<unknown>,
    ): Promise<{ error: string; status: number; body: Record<string, unknown>; wwwAuthenticate?: string }> {
      const e = await p.then(
        () => {
          throw new Error("expected a refusal");
        },
        (e: unknown) => e,
      );
      if (e instanceof oidc.ResponseBodyError) return { error: e.error, status: e.status, body: e.cause };
      if (e instanceof oidc.WWWAuthenticateChallengeError) {
        const body = (await e.response.json()) as Record<string, unknown>;
        return {
          error: body["error"] as string,
          status: e.status,
          body,
          wwwAuthenticate: e.response.headers.get("www-authenticate") ?? undefined,
        };
      }
      throw e;
    }

    let jwks: ReturnType<typeof createRemoteJWKSet>;
    let signingKey: Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];
    let dev: oidc.Configuration;
    let backend: oidc.Configuration;

    beforeAll(async () => {
      const pair = await generateKeyPair("ES256");
      signingKey = pair.privateKey;
      const publicJwk = { ...(await exportJWK(pair.publicKey)), alg: "ES256", kid: "signed-1" };
      t = await startTestApp({
        kind,
        overrides: { clock },
        config: {
          dev: true,
          "tokens.audience": ["identity", "orders"],
          "tokens.refresh_reuse_grace_seconds": 10,
          "oauth.clients": {
            backend: {
              token_endpoint_auth_method: "client_secret_basic",
              client_secret_sha256: sha256(BACKEND_SECRET),
            },
            poster: {
              token_endpoint_auth_method: "client_secret_post",
              client_secret_sha256: sha256(POSTER_SECRET),
              grant_types: [TOKEN_EXCHANGE],
            },
            narrow: { grant_types: [JWT_BEARER], audiences: ["identity"] },
            exchanger: { grant_types: [TOKEN_EXCHANGE], audiences: ["identity"] },
            signed: { token_endpoint_auth_method: "private_key_jwt", jwks: { keys: [publicJwk] } },
          },
        },
      });
      jwks = createRemoteJWKSet(new URL(`${t.url}/.well-known/jwks.json`));
      dev = await discover("dev", oidc.None());
      backend = await discover("backend", oidc.ClientSecretBasic(BACKEND_SECRET));
    });
    afterAll(async () => {
      await t?.close();
    });

    async function exchange(config: oidc.Configuration, sub: string, extra: Record<string, string> = {}) {
      return oidc.genericGrantRequest(config, TOKEN_EXCHANGE, {
        subject_token: await mint(sub),
        subject_token_type: ID_TOKEN_TYPE,
        ...extra,
      });
    }

    it("publishes the same endpoints in RFC 8414 metadata and the OpenID discovery document", async () => {
      const viaOauth = await discover("dev", oidc.None(), "oauth2");
      for (const config of [dev, viaOauth]) {
        const m = config.serverMetadata();
        expect(m.issuer).toBe(LOCAL_ISSUER);
        expect(m.token_endpoint).toBe(`${t.url}/oauth2/token`);
        expect(m.revocation_endpoint).toBe(`${t.url}/oauth2/revoke`);
        expect(m.introspection_endpoint).toBe(`${t.url}/oauth2/introspect`);
        expect(m.grant_types_supported).toEqual([TOKEN_EXCHANGE, JWT_BEARER, "refresh_token", MFA_GRANT]);
        expect(m.token_endpoint_auth_methods_supported).toEqual([
          "none",
          "client_secret_basic",
          "client_secret_post",
          "private_key_jwt",
        ]);
        expect(m.token_endpoint_auth_signing_alg_values_supported).toContain("ES256");
      }
    });

    it("token exchange: an ID token for our access token and refresh token, no-store, the provider chosen by issuer", async () => {
      const sub = uniqueSub("exchange");
      const res = await fetch(`${t.url}/oauth2/token`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({
          grant_type: TOKEN_EXCHANGE,
          client_id: "dev",
          subject_token: await mint(sub),
          subject_token_type: ID_TOKEN_TYPE,
          requested_token_type: ACCESS_TOKEN_TYPE,
          audience: "orders",
        }),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(res.headers.get("content-type")).toMatch(/^application\/json/);
      const body = (await res.json()) as Record<string, unknown>;
      expect(Object.keys(body).sort()).toEqual([
        "access_token",
        "expires_in",
        "issued_token_type",
        "refresh_token",
        "token_type",
      ]);
      expect(body).toMatchObject({ token_type: "Bearer", expires_in: 1800, issued_token_type: ACCESS_TOKEN_TYPE });
      expect(body["refresh_token"]).toMatch(/^rt_[A-Za-z0-9_-]{43}$/);
      const { payload } = await jwtVerify(body["access_token"] as string, jwks, {
        issuer: LOCAL_ISSUER,
        audience: "orders",
        algorithms: ["ES256"],
      });
      expect(payload.sub).toMatch(/^usr_/);
      // One audit trail: the sign-in is recorded as any other.
      const audit = await t.app.database.client.auditEvent.findFirstOrThrow({
        where: { type: "signin.succeeded", userId: payload.sub! },
      });
      expect(audit.provider).toBe("dev");

      const viaClient = await exchange(dev, uniqueSub("exchange-client"));
      expect(viaClient.token_type).toBe("bearer");
      expect(viaClient.issued_token_type).toBe(ACCESS_TOKEN_TYPE);
    });

    it("a replayed subject token is invalid_grant, and nothing new is issued", async () => {
      const idToken = await mint(uniqueSub("replay"));
      await oidc.genericGrantRequest(dev, TOKEN_EXCHANGE, {
        subject_token: idToken,
        subject_token_type: ID_TOKEN_TYPE,
      });
      const sessions = await t.app.database.client.session.count();
      const r = await rejection(
        oidc.genericGrantRequest(dev, TOKEN_EXCHANGE, { subject_token: idToken, subject_token_type: ID_TOKEN_TYPE }),
      );
      expect(r).toMatchObject({ error: "invalid_grant", status: 400 });
      expect(r.body["error_code"]).toBe("id_token_replayed");
      expect(await t.app.database.client.session.count()).toBe(sessions);
    });

    it("jwt-bearer: the ID token as assertion", async () => {
      const narrow = await discover("narrow", oidc.None());
      const tokens = await oidc.genericGrantRequest(narrow, JWT_BEARER, { assertion: await mint(uniqueSub("bearer")) });
      expect(tokens.refresh_token).toMatch(/^rt_/);
      expect(tokens.issued_token_type).toBeUndefined();
      await jwtVerify(tokens.access_token, jwks, { issuer: LOCAL_ISSUER, audience: "identity" });
    });

    it("refresh rotates; the spent token, after the grace window, then revokes the family (invalid_grant)", async () => {
      const first = await exchange(dev, uniqueSub("refresh"));
      const second = await oidc.refreshTokenGrant(dev, first.refresh_token!);
      expect(second.refresh_token).not.toBe(first.refresh_token);
      clock.advance(11_000);
      const reuse = await rejection(oidc.refreshTokenGrant(dev, first.refresh_token!));
      expect(reuse).toMatchObject({ error: "invalid_grant", status: 400 });
      expect(reuse.body["error_code"]).toBe("refresh_token_reused");
      // The whole session ended: its newest token is refused too.
      const after = await rejection(oidc.refreshTokenGrant(dev, second.refresh_token!));
      expect(after.error).toBe("invalid_grant");
    });

    it("two refreshes with one token at once (two tabs) get the same refresh token back, on both doors; the session lives", async () => {
      const first = await exchange(dev, uniqueSub("tabs"));
      const [a, b] = await Promise.all([
        oidc.refreshTokenGrant(dev, first.refresh_token!),
        oidc.refreshTokenGrant(dev, first.refresh_token!),
      ]);
      expect(a.refresh_token).toMatch(/^rt_[A-Za-z0-9_-]{43}$/);
      expect(b.refresh_token).toBe(a.refresh_token);
      for (const access of [a.access_token, b.access_token]) {
        expect((await fetch(`${t.url}/auth/me`, { headers: { authorization: `Bearer ${access}` } })).status).toBe(200);
      }
      // The successor works once, as any refresh token.
      const next = await oidc.refreshTokenGrant(dev, a.refresh_token!);
      expect(next.refresh_token).not.toBe(a.refresh_token);

      // The RPC door (REST here) alike, for a session it opened (each door refreshes its own).
      const viaRest = (token: string) =>
        fetch(`${t.url}/auth/token/refresh`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ refresh_token: token }),
        }).then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, unknown> }));
      const signin = await fetch(`${t.url}/auth/id-token/signin`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ id_token: await mint(uniqueSub("tabs-rest")) }),
      });
      const own = ((await signin.json()) as { refresh_token: string }).refresh_token;
      const [r1, r2] = await Promise.all([viaRest(own), viaRest(own)]);
      expect([r1.status, r2.status]).toEqual([200, 200]);
      expect(r2.body["refresh_token"]).toBe(r1.body["refresh_token"]);
    });

    it("within the grace window, the spent token from another client is reuse: the family is revoked", async () => {
      const first = await exchange(dev, uniqueSub("other-client"));
      const second = await oidc.refreshTokenGrant(dev, first.refresh_token!);
      const thief = await rejection(oidc.refreshTokenGrant(backend, first.refresh_token!));
      expect(thief).toMatchObject({ error: "invalid_grant", status: 400 });
      expect(thief.body["error_code"]).toBe("refresh_token_reused");
      expect((await rejection(oidc.refreshTokenGrant(dev, second.refresh_token!))).body["error_code"]).toBe(
        "session_revoked",
      );
      expect(
        (await fetch(`${t.url}/auth/me`, { headers: { authorization: `Bearer ${second.access_token}` } })).status,
      ).toBe(401);
    });

    /** POST a JSON body to a REST route of the service's own API (the RPC door). */
    async function rest(
      path: string,
      body: unknown,
      bearer?: string,
    ): Promise<{ status: number; body: Record<string, unknown> }> {
      const res = await fetch(`${t.url}${path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(bearer === undefined ? {} : { authorization: `Bearer ${bearer}` }),
        },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    }
    const sidOf = (accessToken: string) => decodeJwt(accessToken)["sid"] as string;
    const sessionRow = (accessToken: string) =>
      t.app.database.client.session.findUniqueOrThrow({ where: { id: sidOf(accessToken) } });
    const meStatus = async (accessToken: string) =>
      (await fetch(`${t.url}/auth/me`, { headers: { authorization: `Bearer ${accessToken}` } })).status;

    it("a session is bound to the client that opened it: another client's refresh is invalid_grant, the RPC door's refresh_token_client_mismatch; nothing is spent or revoked", async () => {
      const first = await exchange(dev, uniqueSub("bound"));
      expect((await sessionRow(first.access_token)).clientId).toBe("dev");
      const other = await rejection(oidc.refreshTokenGrant(backend, first.refresh_token!));
      expect(other).toMatchObject({ error: "invalid_grant", status: 400 });
      expect(other.body["error_code"]).toBe("refresh_token_client_mismatch");
      const viaRpc = await rest("/auth/token/refresh", { refresh_token: first.refresh_token });
      expect(viaRpc.status).toBe(401);
      expect(viaRpc.body["code"]).toBe("refresh_token_client_mismatch");
      // Not theft: the session lives, and its own client refreshes the same (unspent) token.
      expect(await meStatus(first.access_token)).toBe(200);
      const second = await oidc.refreshTokenGrant(dev, first.refresh_token!);
      // The binding is the session's: the rotated token is the same client's.
      expect((await rejection(oidc.refreshTokenGrant(backend, second.refresh_token!))).body["error_code"]).toBe(
        "refresh_token_client_mismatch",
      );
      expect((await sessionRow(second.access_token)).clientId).toBe("dev");
      // Audited, with the client that asked.
      const refused = await t.app.database.client.auditEvent.findMany({
        where: {
          type: "token.refresh_failed",
          code: "refresh_token_client_mismatch",
          detail: { contains: sidOf(first.access_token) },
        },
      });
      expect(refused.map((e) => JSON.parse(e.detail!).client_id).sort()).toEqual(
        ["backend", "backend", undefined].sort(),
      );
    });

    it("a session opened through the RPC door is not refreshed or revoked through the OAuth door", async () => {
      const signin = await rest("/auth/id-token/signin", { id_token: await mint(uniqueSub("rpc-door")) });
      expect(signin.status).toBe(200);
      const access = signin.body["access_token"] as string;
      const refresh = signin.body["refresh_token"] as string;
      expect((await sessionRow(access)).clientId).toBeNull();
      expect((await rejection(oidc.refreshTokenGrant(dev, refresh))).body["error_code"]).toBe(
        "refresh_token_client_mismatch",
      );
      expect(await rejection(oidc.tokenRevocation(dev, refresh))).toMatchObject({
        error: "unauthorized_client",
        status: 400,
      });
      expect(await meStatus(access)).toBe(200);
      // Its own door still refreshes it; the OAuth door's introspection reads it as inactive.
      expect(await oidc.tokenIntrospection(backend, refresh)).toEqual({ active: false });
      expect((await rest("/auth/token/refresh", { refresh_token: refresh })).status).toBe(200);
      // Audit rows of the RPC door carry no client_id; the OAuth door's do.
      const rpcRow = await t.app.database.client.auditEvent.findFirstOrThrow({
        where: { type: "signin.succeeded", userId: (await sessionRow(access)).userId },
      });
      expect(JSON.parse(rpcRow.detail!)).not.toHaveProperty("client_id");
    });

    it("sign-in and refresh audit rows through the OAuth door carry client_id", async () => {
      const first = await exchange(backend, uniqueSub("audit-client"));
      const second = await oidc.refreshTokenGrant(backend, first.refresh_token!);
      const rows = await t.app.database.client.auditEvent.findMany({
        where: {
          type: { in: ["signin.succeeded", "token.refreshed"] },
          userId: (await sessionRow(second.access_token)).userId,
        },
      });
      expect(rows.map((r) => [r.type, JSON.parse(r.detail!).client_id]).sort()).toEqual([
        ["signin.succeeded", "backend"],
        ["token.refreshed", "backend"],
      ]);
    });

    it("revocation of another client's token is refused with unauthorized_client (RFC 7009 §2.1), and revokes nothing", async () => {
      const tokens = await exchange(dev, uniqueSub("revoke-other"));
      for (const token of [tokens.refresh_token!, tokens.access_token]) {
        expect(await rejection(oidc.tokenRevocation(backend, token))).toMatchObject({
          error: "unauthorized_client",
          status: 400,
        });
      }
      expect(await meStatus(tokens.access_token)).toBe(200);
      expect((await sessionRow(tokens.access_token)).revokedAt).toBeNull();
      // Its own client revokes it (by the access token here).
      await oidc.tokenRevocation(dev, tokens.access_token, { token_type_hint: "access_token" });
      expect(await meStatus(tokens.access_token)).toBe(401);
    });

    it("introspection of a refresh token (token_type_hint=refresh_token): active for the caller's own, with client_id, sub, sid, exp; inactive for another's or a spent one", async () => {
      const first = await exchange(backend, uniqueSub("introspect-rt"));
      const own = await oidc.tokenIntrospection(backend, first.refresh_token!, { token_type_hint: "refresh_token" });
      const session = await sessionRow(first.access_token);
      expect(own).toEqual({
        active: true,
        token_type: "refresh_token",
        client_id: "backend",
        sub: session.userId,
        sid: session.id,
        exp: Math.floor(session.expiresAt.getTime() / 1000),
      });
      // Without the hint too; the access token's answer names the client as well.
      expect((await oidc.tokenIntrospection(backend, first.refresh_token!)).active).toBe(true);
      expect(await oidc.tokenIntrospection(backend, first.access_token)).toMatchObject({
        active: true,
        client_id: "backend",
        sid: session.id,
      });
      const signed = await discover(
        "signed",
        oidc.PrivateKeyJwt(signingKey, {
          [oidc.modifyAssertion]: (header) => {
            header.kid = "signed-1";
          },
        }),
      );
      expect(await oidc.tokenIntrospection(signed, first.refresh_token!, { token_type_hint: "refresh_token" })).toEqual(
        { active: false },
      );
      await oidc.refreshTokenGrant(backend, first.refresh_token!);
      expect(
        await oidc.tokenIntrospection(backend, first.refresh_token!, { token_type_hint: "refresh_token" }),
      ).toEqual({ active: false });
      expect(await oidc.tokenIntrospection(backend, "rt_never-issued", { token_type_hint: "refresh_token" })).toEqual({
        active: false,
      });
    });

    it("a confidential client authenticates with Basic or client_secret_post", async () => {
      const tokens = await exchange(backend, uniqueSub("basic"));
      expect(tokens.access_token).toEqual(expect.any(String));
      const poster = await discover("poster", oidc.ClientSecretPost(POSTER_SECRET));
      expect((await exchange(poster, uniqueSub("post"))).refresh_token).toMatch(/^rt_/);
    });

    it("private_key_jwt: a signed client assertion authenticates; a replayed jti, another key or audience is invalid_client", async () => {
      const signed = await discover(
        "signed",
        oidc.PrivateKeyJwt(signingKey, {
          [oidc.modifyAssertion]: (header) => {
            header.kid = "signed-1";
          },
        }),
      );
      expect((await exchange(signed, uniqueSub("signed"))).refresh_token).toMatch(/^rt_/);
      expect(await oidc.tokenIntrospection(signed, "not-a-token")).toEqual({ active: false });

      const assertion = (key: typeof signingKey, aud: string, jti = crypto.randomUUID()) =>
        new SignJWT({ jti })
          .setProtectedHeader({ alg: "ES256", kid: "signed-1" })
          .setIssuer("signed")
          .setSubject("signed")
          .setAudience(aud)
          .setIssuedAt()
          .setExpirationTime("1m")
          .sign(key);
      const post = async (clientAssertion: string) => {
        const res = await fetch(`${t.url}/oauth2/token`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({
            grant_type: JWT_BEARER,
            assertion: await mint(uniqueSub("signed-raw")),
            client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            client_assertion: clientAssertion,
          }),
        });
        return {
          status: res.status,
          body: (await res.json()) as Record<string, unknown>,
          wwwAuthenticate: res.headers.get("www-authenticate"),
        };
      };
      const once = await assertion(signingKey, `${t.url}/oauth2/token`);
      expect((await post(once)).status).toBe(200);
      const replayed = await post(once);
      expect(replayed).toMatchObject({
        status: 401,
        body: { error: "invalid_client", error_description: "this client assertion was already used (jti)" },
      });
      expect(replayed.wwwAuthenticate).toMatch(/^Basic/);
      const otherKey = (await generateKeyPair("ES256")).privateKey;
      expect((await post(await assertion(otherKey, LOCAL_ISSUER))).body["error"]).toBe("invalid_client");
      expect((await post(await assertion(signingKey, "https://elsewhere.example"))).body["error"]).toBe(
        "invalid_client",
      );
    });

    it("invalid_client: 401 with WWW-Authenticate, for a wrong secret, an unknown client, the wrong method, a public client's secret", async () => {
      const cases: oidc.Configuration[] = [
        await discover("backend", oidc.ClientSecretBasic("wrong-secret")),
        await discover("nobody", oidc.None()),
        await discover("backend", oidc.ClientSecretPost(BACKEND_SECRET)),
        await discover("dev", oidc.ClientSecretBasic("anything")),
      ];
      const sessions = await t.app.database.client.session.count();
      for (const config of cases) {
        const r = await rejection(exchange(config, uniqueSub("bad-client")));
        expect(r.status).toBe(401);
        expect(r.error).toBe("invalid_client");
        expect(r.wwwAuthenticate).toMatch(/^Basic realm="oauth2"/);
      }
      expect(await t.app.database.client.session.count()).toBe(sessions);
    });

    it("grant and parameter errors: unsupported_grant_type, unauthorized_client, invalid_request, invalid_target, invalid_scope, invalid_grant", async () => {
      const narrow = await discover("narrow", oidc.None());
      const exchanger = await discover("exchanger", oidc.None());
      const idToken = () => mint(uniqueSub("errors"));
      const cases: [() => Promise<unknown>, string][] = [
        [
          async () => oidc.genericGrantRequest(dev, "password", { username: "a", password: "b" }),
          "unsupported_grant_type",
        ],
        [
          async () =>
            oidc.genericGrantRequest(narrow, TOKEN_EXCHANGE, {
              subject_token: await idToken(),
              subject_token_type: ID_TOKEN_TYPE,
            }),
          "unauthorized_client",
        ],
        [
          async () => oidc.genericGrantRequest(dev, TOKEN_EXCHANGE, { subject_token: await idToken() }),
          "invalid_request",
        ],
        [
          async () =>
            oidc.genericGrantRequest(dev, TOKEN_EXCHANGE, {
              subject_token: await idToken(),
              subject_token_type: "urn:ietf:params:oauth:token-type:saml2",
            }),
          "invalid_request",
        ],
        [
          async () =>
            oidc.genericGrantRequest(dev, TOKEN_EXCHANGE, {
              subject_token: await idToken(),
              subject_token_type: ID_TOKEN_TYPE,
              requested_token_type: "urn:ietf:params:oauth:token-type:refresh_token",
            }),
          "invalid_request",
        ],
        [
          async () =>
            oidc.genericGrantRequest(exchanger, TOKEN_EXCHANGE, {
              subject_token: await idToken(),
              subject_token_type: ID_TOKEN_TYPE,
              audience: "orders",
            }),
          "invalid_target",
        ],
        [
          async () =>
            oidc.genericGrantRequest(dev, TOKEN_EXCHANGE, {
              subject_token: await idToken(),
              subject_token_type: ID_TOKEN_TYPE,
              resource: "https://elsewhere.example/api",
            }),
          "invalid_target",
        ],
        [
          async () =>
            oidc.genericGrantRequest(dev, TOKEN_EXCHANGE, {
              subject_token: await idToken(),
              subject_token_type: ID_TOKEN_TYPE,
              scope: "admin",
            }),
          "invalid_scope",
        ],
        [async () => oidc.genericGrantRequest(dev, JWT_BEARER, { assertion: "not.a.jwt" }), "invalid_grant"],
        [async () => oidc.refreshTokenGrant(dev, "rt_unknown"), "invalid_grant"],
      ];
      for (const [call, error] of cases) {
        const r = await rejection(call());
        expect([r.error, r.status]).toEqual([error, 400]);
        expect(r.body["error_description"]).toEqual(expect.any(String));
      }
    });

    it("a form-less request and a repeated parameter are invalid_request", async () => {
      const asJson = await fetch(`${t.url}/oauth2/token`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ grant_type: "refresh_token" }),
      });
      expect(asJson.status).toBe(400);
      expect(await asJson.json()).toMatchObject({ error: "invalid_request" });
      const twice = await fetch(`${t.url}/oauth2/token`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "client_id=dev&grant_type=refresh_token&refresh_token=rt_a&refresh_token=rt_b",
      });
      expect(twice.status).toBe(400);
      expect(twice.headers.get("cache-control")).toBe("no-store");
      expect(await twice.json()).toMatchObject({
        error: "invalid_request",
        error_description: "refresh_token was sent more than once",
      });
    });

    it("revocation ends the session behind a refresh token; an unknown token is 200 too", async () => {
      const tokens = await exchange(dev, uniqueSub("revoke"));
      await oidc.tokenRevocation(dev, tokens.refresh_token!, { token_type_hint: "refresh_token" });
      const me = await fetch(`${t.url}/auth/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
      expect(me.status).toBe(401);
      expect(((await me.json()) as { code: string }).code).toBe("session_revoked");
      expect((await rejection(oidc.refreshTokenGrant(dev, tokens.refresh_token!))).error).toBe("invalid_grant");
      await oidc.tokenRevocation(dev, "rt_never-issued");
      await oidc.tokenRevocation(dev, tokens.refresh_token!);
      const badHint = await rejection(oidc.tokenRevocation(dev, "x", { token_type_hint: "saml" }));
      expect(badHint).toMatchObject({ error: "unsupported_token_type", status: 400 });
    });

    it("introspection (confidential clients) says whether an access token's session is live", async () => {
      const tokens = await exchange(dev, uniqueSub("introspect"));
      const live = await oidc.tokenIntrospection(backend, tokens.access_token);
      expect(live).toMatchObject({
        active: true,
        token_type: "Bearer",
        iss: LOCAL_ISSUER,
        sid: expect.stringMatching(/^ses_/),
        sub: expect.stringMatching(/^usr_/),
      });
      expect(live.exp).toEqual(expect.any(Number));
      await oidc.tokenRevocation(dev, tokens.refresh_token!);
      expect(await oidc.tokenIntrospection(backend, tokens.access_token)).toEqual({ active: false });
      expect(await oidc.tokenIntrospection(backend, "not-a-token")).toEqual({ active: false });
      const publicClient = await rejection(oidc.tokenIntrospection(dev, tokens.access_token));
      expect(publicClient).toMatchObject({ error: "invalid_client", status: 401 });
    });

    it("mfa_required carries the challenge as mfa_token; the MFA grant completes it", async () => {
      const sub = uniqueSub("mfa");
      device = `${sub}-A`;
      const first = await exchange(dev, sub);
      const authed = (path: string, body: unknown) =>
        fetch(`${t.url}${path}`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${first.access_token}` },
          body: JSON.stringify(body),
        });
      const secret = ((await (await authed("/auth/mfa/totp/enroll", {})).json()) as { secret: string }).secret;
      clock.advance(30_000);
      expect((await authed("/auth/mfa/totp/confirm", { code: totpCode(secret, clock.now()) })).status).toBe(200);

      device = `${sub}-B`;
      const challenged = await rejection(exchange(dev, sub));
      expect(challenged).toMatchObject({ error: "mfa_required", status: 403 });
      expect(challenged.body["mfa_token"]).toMatch(/^chg_[A-Za-z0-9_-]{43}$/);
      expect(challenged.body["required_mfa_methods"]).toEqual(expect.arrayContaining(["totp"]));
      const wrong = await rejection(
        oidc.genericGrantRequest(dev, MFA_GRANT, { mfa_token: challenged.body["mfa_token"] as string, code: "000000" }),
      );
      expect(wrong).toMatchObject({ error: "invalid_grant", status: 400 });
      clock.advance(30_000);
      // The challenge is the client's that asked for it: another client, or the RPC door, cannot complete it.
      const mfaToken = challenged.body["mfa_token"] as string;
      expect(
        (
          await t.app.database.client.mfaChallenge.findFirstOrThrow({
            where: { tokenHash: createHash("sha256").update(mfaToken).digest("base64url") },
          })
        ).clientId,
      ).toBe("dev");
      const otherClient = await rejection(
        oidc.genericGrantRequest(backend, MFA_GRANT, { mfa_token: mfaToken, code: totpCode(secret, clock.now()) }),
      );
      expect(otherClient.body).toMatchObject({
        error: "invalid_grant",
        error_code: "challenge_invalid",
        error_description: "this challenge was issued to another client; sign in again",
      });
      const viaRpc = await rest("/auth/mfa/verify", {
        challenge_token: mfaToken,
        method: "totp",
        code: totpCode(secret, clock.now()),
      });
      expect([viaRpc.status, viaRpc.body["code"]]).toEqual([401, "challenge_invalid"]);
      const done = await oidc.genericGrantRequest(dev, MFA_GRANT, {
        mfa_token: mfaToken,
        code: totpCode(secret, clock.now()),
      });
      const { payload } = await jwtVerify(done.access_token, jwks, { issuer: LOCAL_ISSUER });
      expect(payload["amr"]).toEqual(["fed", "otp", "mfa"]);
      // The session it opened is bound to the same client.
      expect((await sessionRow(done.access_token)).clientId).toBe("dev");
      expect((await rejection(oidc.refreshTokenGrant(backend, done.refresh_token!))).body["error_code"]).toBe(
        "refresh_token_client_mismatch",
      );
      device = "oauth-device";
    });
  });
}

/**
 * Two app instances on one PostgreSQL database (replicas: their own pools, caches and key rings,
 * the same KEK): the same refresh token refreshed on both at once gets the same successor.
 */
describe.runIf(postgresKind() !== null)("refresh grace across two replicas on PostgreSQL", () => {
  let a: TestApp;
  let b: TestApp;
  const config = { dev: true, "tokens.refresh_reuse_grace_seconds": 10 };
  beforeAll(async () => {
    a = await startTestApp({ kind: postgresKind()!, config });
    b = await startTestApp({ kind: postgresKind()!, config: { ...config, "database.url": a.database.url } });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  const form = async (url: string, params: Record<string, string>) => {
    const res = await fetch(`${url}/oauth2/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ client_id: "dev", ...params }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, string> };
  };

  it("both replicas answer 200 with the same refresh token, and the session stays live", async () => {
    const idToken = await devIdToken(a.url, uniqueSub("replicas"));
    // The dev issuer's key lives in each data directory: sign in where the token was minted.
    const first = await form(a.url, {
      grant_type: TOKEN_EXCHANGE,
      subject_token: idToken,
      subject_token_type: ID_TOKEN_TYPE,
    });
    expect(first.status).toBe(200);
    const [ra, rb] = await Promise.all([
      form(a.url, { grant_type: "refresh_token", refresh_token: first.body["refresh_token"]! }),
      form(b.url, { grant_type: "refresh_token", refresh_token: first.body["refresh_token"]! }),
    ]);
    expect([ra.status, rb.status]).toEqual([200, 200]);
    expect(rb.body["refresh_token"]).toBe(ra.body["refresh_token"]);
    // The access token minted by b is accepted by a (one session, live).
    expect(
      (await fetch(`${a.url}/auth/me`, { headers: { authorization: `Bearer ${rb.body["access_token"]}` } })).status,
    ).toBe(200);
  });
});

/**
 * The README's openid-client snippet, run as written: our public URL and issuer are the snippet's
 * `https://identity.example.com` (fetch goes to this server while it runs), its client `web` is
 * registered as a public client, and `idTokenFromGoogle` is an ID token of the dev issuer.
 */
describe("the README's openid-client snippet", () => {
  const PUBLIC = "https://identity.example.com";
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({
      config: { dev: true, "server.public_url": PUBLIC, "tokens.issuer": PUBLIC, "oauth.clients": { web: {} } },
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("discovers, exchanges, refreshes and revokes, each session bound to the client web", async () => {
    const snippet = markdownSnippet("README.md", "oauth-openid-client");
    expect(snippet).toContain(`new URL("${PUBLIC}")`);
    const idToken = await devIdToken(t.url, uniqueSub("snippet"));
    // A module of its own (vitest compiles it as any test file), exporting what the snippet made.
    const dir = join(import.meta.dirname, "../../test-output");
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `oauth-openid-client-${process.pid}-${Date.now()}.ts`);
    writeFileSync(file, `${snippet}\nexport { tokens, refreshed };\n`);
    const realFetch = globalThis.fetch;
    const g = globalThis as unknown as Record<string, unknown>;
    g["idTokenFromGoogle"] = idToken;
    globalThis.fetch = ((input: string | URL | Request, init?: RequestInit) => {
      const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
      return realFetch(url.startsWith(PUBLIC) ? `${t.url}${url.slice(PUBLIC.length)}` : input, init);
    }) as typeof fetch;
    let made: {
      tokens: { access_token: string; refresh_token?: string };
      refreshed: { access_token: string; refresh_token?: string };
    };
    try {
      made = (await import(file)) as typeof made;
    } finally {
      globalThis.fetch = realFetch;
      delete g["idTokenFromGoogle"];
      rmSync(file, { force: true });
    }
    const sid = decodeJwt(made.refreshed.access_token)["sid"] as string;
    const session = await t.app.database.client.session.findUniqueOrThrow({ where: { id: sid } });
    // The snippet's revocation ended the session it opened (as client web, whose session it is).
    expect(session.clientId).toBe("web");
    expect(session.revokedAt).not.toBeNull();
    expect(
      (await fetch(`${t.url}/auth/me`, { headers: { authorization: `Bearer ${made.refreshed.access_token}` } })).status,
    ).toBe(401);
  });
});

describe("the per-address limit on the OAuth door", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({
      config: {
        dev: true,
        "rate_limit.signin_failures_per_ip": 3,
        "oauth.clients": {
          backend: { token_endpoint_auth_method: "client_secret_basic", client_secret_sha256: sha256(BACKEND_SECRET) },
        },
      },
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("the README's curl token exchange works as written (against this server)", async () => {
    const [mint, exchange] = shellCommands(markdownSnippet("README.md", "oauth-curl"));
    const script = [mint, exchange].join("\n").replaceAll("localhost:8080", t.url.replace(/^http:\/\//, ""));
    // Asynchronously: the server answering curl runs in this process.
    const { stdout } = await promisify(execFile)("bash", ["-c", script], { encoding: "utf8", timeout: 20_000 });
    const answer = JSON.parse(stdout) as Record<string, unknown>;
    expect(answer).toMatchObject({
      token_type: "Bearer",
      issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
    });
    expect(answer["refresh_token"]).toMatch(/^rt_/);
  });

  it("wrong client secrets count as failures: then 429 rate_limited with Retry-After, the right secret too", async () => {
    const post = (secret: string) =>
      fetch(`${t.url}/oauth2/token`, {
        method: "POST",
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          authorization: `Basic ${Buffer.from(`backend:${secret}`).toString("base64")}`,
        },
        body: "grant_type=refresh_token&refresh_token=rt_x",
      });
    for (let i = 0; i < 3; i++) expect((await post(`wrong-${i}`)).status).toBe(401);
    const limited = await post(BACKEND_SECRET);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(await limited.json()).toMatchObject({ error: "rate_limited" });
  });
});
