/**
 * Hostile callers: ID-token replay over every protocol (and through the MFA challenge), server-
 * issued nonces, the per-address limit (reserved before verification, Retry-After with the time
 * actually left, RetryInfo over Connect and gRPC, one aggregated audit row instead of one per
 * refusal), VerifyMfa and refresh under the same limit, and upstream outages not counted.
 */
import { createHash } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import Database from "better-sqlite3";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { createConnectTransport } from "@connectrpc/connect-node";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema, RetryInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";
import { AuthService } from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { createAuditLog } from "../../src/store/account-store.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import {
  createTokenSigner,
  devIdToken,
  grpcSignin,
  grpcTarget,
  metadataToHeaders,
  uniqueSub,
} from "../support/signin-e2e.ts";
import { statusAndCode } from "../support/error-code.ts";

const json = { "content-type": "application/json" };

const mint = (t: TestApp, sub: string, claims: Record<string, unknown> = {}) => devIdToken(t.url, sub, claims);

/** The (unverified) claims of a compact JWT. */
const claimsOf = (token: string) => decodeJwt(token) as { iss: string; jti: string; exp: number };

function post(t: TestApp, path: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${t.url}${path}`, { method: "POST", headers: { ...json, ...headers }, body: JSON.stringify(body) });
}

describe("ID-token replay", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ config: { dev: true, "rate_limit.signin_failures_per_ip": 0 } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("accepts a token once; REST, Connect and gRPC reuse of it is id_token_replayed (401) and opens nothing", async () => {
    const sub = uniqueSub("replay");
    const token = await mint(t, sub);
    expect((await post(t, "/auth/id-token/signin", { id_token: token, provider: "dev" })).status).toBe(200);

    const rest = await post(t, "/auth/id-token/signin", { id_token: token, provider: "dev" });
    expect(rest.status).toBe(401);
    expect(await rest.json()).toMatchObject({ code: "id_token_replayed", status: "unauthenticated" });

    const connect = createClient(AuthService, createConnectTransport({ baseUrl: t.url, httpVersion: "2" }));
    const err = await connect
      .signinWithIdToken({ idToken: token, provider: "dev" })
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Unauthenticated);
    expect((err as ConnectError).findDetails(ErrorInfoSchema)[0]?.reason).toBe("id_token_replayed");

    const client = new grpc.Client(grpcTarget(t.url), grpc.credentials.createInsecure());
    try {
      const out = await grpcSignin(client, { idToken: token, provider: "dev" });
      expect("error" in out && out.error.code).toBe(grpc.status.UNAUTHENTICATED);
      if ("error" in out)
        expect(findTrailerError(metadataToHeaders(out.error.metadata))?.findDetails(ErrorInfoSchema)[0]?.reason).toBe(
          "id_token_replayed",
        );
    } finally {
      client.close();
    }

    const db = t.app.database.client;
    const user = await db.identity.findFirstOrThrow({ where: { subject: sub } });
    expect(await db.session.count({ where: { userId: user.userId } })).toBe(1);
    expect(
      await db.auditEvent.count({ where: { subject: sub, type: "signin.failed", code: "id_token_replayed" } }),
    ).toBe(3);
    // Remembered by a hash (of issuer and jti: the dev issuer sets one), never the token itself.
    const { iss, jti, exp } = claimsOf(token);
    const key = `${String(exp + 60).padStart(11, "0")}.jti:${createHash("sha256").update(`${iss}\n${jti}`).digest("hex")}`;
    expect(await db.usedIdToken.count({ where: { key } })).toBe(1);
    expect(JSON.stringify(await db.usedIdToken.findMany())).not.toContain(token.split(".")[2]!);
  });

  it("remembers a token until its expiry plus the skew, then the purge forgets it", async () => {
    const token = await mint(t, uniqueSub("jti"));
    expect((await post(t, "/auth/id-token/signin", { id_token: token, provider: "dev" })).status).toBe(200);
    const { iss, jti, exp } = claimsOf(token);
    const db = t.app.database.client;
    const marker = (await db.usedIdToken.findMany()).find((m) =>
      m.key.includes(createHash("sha256").update(`${iss}\n${jti}`).digest("hex")),
    )!;
    expect(marker.expiresAt.getTime()).toBe((exp + 60) * 1000);
    const purger = createAuditLog(db);
    expect(await purger.purgeExpiredUses(new Date(marker.expiresAt.getTime() - 1000))).toBe(0);
    expect(await db.usedIdToken.count({ where: { key: marker.key } })).toBe(1);
    expect(await purger.purgeExpiredUses(new Date(marker.expiresAt.getTime() + 1000))).toBeGreaterThanOrEqual(1);
    expect(await db.usedIdToken.count({ where: { key: marker.key } })).toBe(0);
  });
});

describe("server-issued nonces (require_nonce: server)", () => {
  let t: TestApp;
  let signer: Awaited<ReturnType<typeof createTokenSigner>>;
  const ISSUER = "https://strict.example";
  beforeAll(async () => {
    signer = await createTokenSigner();
    t = await startTestApp({
      config: {
        dev: true,
        "rate_limit.signin_failures_per_ip": 0,
        providers: {
          strict: { issuer: ISSUER, client_ids: ["app"], jwks_uri: `${ISSUER}/jwks`, require_nonce: "server" },
        },
      },
      overrides: {
        fetch: (async () =>
          new Response(JSON.stringify({ keys: [signer.publicJwk] }), {
            headers: { "content-type": "application/json" },
          })) as typeof fetch,
      },
    });
  });
  afterAll(async () => {
    await t?.close();
  });
  const nonceFor = async (deviceId: string) => {
    const res = await post(t, "/auth/id-token/nonce", { device_id: deviceId });
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    return (await res.json()) as { nonce: string; expires_in: number; nonce_sha256: string };
  };

  it("hands out a device-bound nonce and accepts it once, from that device only", async () => {
    const issued = await nonceFor("device-a");
    expect(issued.nonce).toMatch(/^[A-Za-z0-9_-]{48}$/);
    expect(issued.expires_in).toBe(600);
    expect(issued.nonce_sha256).toBe(createHash("sha256").update(issued.nonce).digest("hex"));
    const sub = uniqueSub("nonce");
    const signin = async (nonce: string | undefined, deviceId: string) =>
      post(t, "/auth/id-token/signin", {
        id_token: await signer.sign({
          iss: ISSUER,
          aud: "app",
          sub,
          jti: crypto.randomUUID(),
          ...(nonce === undefined ? {} : { nonce }),
        }),
        provider: "strict",
        ...(nonce === undefined ? {} : { nonce }),
        device_id: deviceId,
      });

    expect(await statusAndCode(await signin(undefined, "device-a"))).toEqual({ status: 400, code: "nonce_required" });
    expect(await statusAndCode(await signin(issued.nonce, "device-b"))).toEqual({ status: 401, code: "nonce_invalid" });
    const forged = `${issued.nonce.slice(0, -4)}AAAA`;
    expect(await statusAndCode(await signin(forged, "device-a"))).toEqual({ status: 401, code: "nonce_invalid" });
    expect((await signin(issued.nonce, "device-a")).status).toBe(200);
    // Spent: a fresh token carrying the same nonce is refused.
    expect(await statusAndCode(await signin(issued.nonce, "device-a"))).toEqual({
      status: 401,
      code: "id_token_replayed",
    });
    expect(
      await t.app.database.client.usedIdToken.count({ where: { key: { endsWith: `.nonce:${issued.nonce_sha256}` } } }),
    ).toBe(1);
  });

  it("refuses to issue a nonce without a device id", async () => {
    const res = await post(t, "/auth/id-token/nonce", {});
    expect(res.status).toBe(400);
    expect(((await res.json()) as { code: string }).code).toBe("invalid_request");
  });
});

describe("the per-address limit under attack", () => {
  let t: TestApp;
  const LIMIT = 30;
  beforeAll(async () => {
    t = await startTestApp({
      config: {
        dev: true,
        "rate_limit.signin_failures_per_ip": LIMIT,
        "rate_limit.signin_failure_window_seconds": 300,
        "rate_limit.refusal_audit_interval_seconds": 3600,
        "server.trusted_proxies": ["127.0.0.1"],
      },
    });
  });
  afterAll(async () => {
    await t?.close();
  });
  const from = (ip: string) => ({ "x-forwarded-for": ip });

  it("50 concurrent bad sign-ins against a limit of 30: at most 30 told their error, the rest 429 with the time left", async () => {
    const ip = "203.0.113.50";
    const bad = await mint(t, uniqueSub("forged"));
    const forged = `${bad.slice(0, -8)}AAAAAAAA`;
    const responses = await Promise.all(
      Array.from({ length: 50 }, () =>
        post(t, "/auth/id-token/signin", { id_token: forged, provider: "dev" }, from(ip)),
      ),
    );
    const statuses = responses.map((r) => r.status);
    const limited = responses.filter((r) => r.status === 429);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(LIMIT);
    expect(limited.length).toBeGreaterThanOrEqual(50 - LIMIT);
    for (const r of limited) {
      const after = Number(r.headers.get("retry-after"));
      expect(after).toBeGreaterThan(290);
      expect(after).toBeLessThanOrEqual(300);
      expect(r.headers.get("cache-control")).toBe("no-store");
    }
    const db = t.app.database.client;
    expect(await db.auditEvent.count({ where: { ip, type: "signin.failed" } })).toBeLessThanOrEqual(LIMIT);
    // No row per refusal: they are tallied and flushed as one row per address.
    expect(await db.auditEvent.count({ where: { ip, code: "rate_limited" } })).toBe(0);

    // Connect and gRPC say when to come back too (google.rpc.RetryInfo).
    const connect = createClient(AuthService, createConnectTransport({ baseUrl: t.url, httpVersion: "1.1" }));
    const err = ConnectError.from(
      await connect
        .signinWithIdToken({ idToken: forged, provider: "dev" }, { headers: from(ip) })
        .catch((e: unknown) => e),
    );
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(Number(err.findDetails(RetryInfoSchema)[0]?.retryDelay?.seconds)).toBeGreaterThan(290);
    const client = new grpc.Client(grpcTarget(t.url), grpc.credentials.createInsecure());
    try {
      const md = new grpc.Metadata();
      md.set("x-forwarded-for", ip);
      const out = await grpcSignin(client, { idToken: forged, provider: "dev" }, md);
      expect("error" in out && out.error.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      if ("error" in out) {
        const e = findTrailerError(metadataToHeaders(out.error.metadata));
        expect(Number(e?.findDetails(RetryInfoSchema)[0]?.retryDelay?.seconds)).toBeGreaterThan(290);
      }
    } finally {
      client.close();
    }

    // VerifyMfa (a guessable code: refused before any work), bad refreshes and nonce requests
    // from the limited address: answered by the limit too.
    for (const [path, body] of [
      ["/auth/mfa/verify", { challenge_token: "chg_nope", method: "totp", code: "123456" }],
      ["/auth/token/refresh", { refresh_token: "rt_nope" }],
      ["/auth/id-token/nonce", {}],
    ] as const) {
      expect((await post(t, path, body, from(ip))).status).toBe(429);
    }
    // What succeeds is not refused for the address's failures: a nonce, a valid token.
    expect((await post(t, "/auth/id-token/nonce", { device_id: "d" }, from(ip))).status).toBe(200);
    expect(
      (await post(t, "/auth/id-token/signin", { id_token: await mint(t, uniqueSub("nat")), provider: "dev" }, from(ip)))
        .status,
    ).toBe(200);
    // Another address is not affected.
    expect(
      (
        await post(
          t,
          "/auth/id-token/signin",
          { id_token: await mint(t, uniqueSub("ok")), provider: "dev" },
          from("198.51.100.50"),
        )
      ).status,
    ).toBe(200);

    // Each interval (here: at shutdown) the refusals become one row per address, with their count.
    const refusals = limited.length + 5;
    await t.app.close();
    const file = new Database(t.database.url.replace(/^file:/, ""), { readonly: true });
    try {
      const rows = file
        .prepare(`SELECT code, detail FROM audit_events WHERE ip = ? AND type = 'address.rate_limited'`)
        .all(ip) as { code: string; detail: string }[];
      expect(rows).toHaveLength(1);
      expect(rows[0]!.code).toBe("rate_limited");
      expect(JSON.parse(rows[0]!.detail)).toMatchObject({
        count: refusals,
        rpcs: expect.arrayContaining(["SigninWithIdToken", "VerifyMfa", "RefreshToken", "CreateNonce"]),
      });
    } finally {
      file.close();
    }
  });
});
