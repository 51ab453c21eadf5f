/**
 * What the sign-in e2e suites share: the REST call, a grpc-js call over h2c, row counts for
 * "nothing was written", the full LoginResponse assertion (including the access token's signature
 * against the server's own JWKS), hand-made ID tokens and a clock tests can move.
 */
import { randomUUID } from "node:crypto";
import { fromBinary, fromJson, type JsonValue, type MessageInitShape, toBinary, create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { createRemoteJWKSet, exportJWK, generateKeyPair, type JWK, jwtVerify, SignJWT } from "jose";
import { expect } from "vitest";
import {
  type LoginResponse,
  LoginResponseSchema,
  SigninWithIdTokenRequestSchema,
} from "../../gen/pb/identity/v1/auth_service_pb.ts";
import type { App } from "../../src/app.ts";
import type { Clock } from "../../src/core/clock.ts";

/** `iss` of the access tokens startTestApp's apps sign. */
export const LOCAL_ISSUER = "https://identity.test";

/** A unique, readable subject per test, so suites sharing one database never collide. */
export function uniqueSub(label: string): string {
  return `${label}-${randomUUID().slice(0, 8)}`;
}

/** A request id the server copies into its audit rows, to find exactly this call's row. */
export function newRequestId(): string {
  return `e2e-${randomUUID()}`;
}

export interface RestResult {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

/** POST /auth/id-token/signin with plain fetch; `body` is sent verbatim when it is a string. */
export async function restSignin(
  url: string,
  body: unknown,
  options: { headers?: Record<string, string>; requestId?: string } = {},
): Promise<RestResult> {
  const res = await fetch(`${url}/auth/id-token/signin`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(options.requestId === undefined ? {} : { "x-request-id": options.requestId }),
      ...options.headers,
    },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>),
  };
}

export interface RowCounts {
  users: number;
  identities: number;
  sessions: number;
  refreshTokens: number;
  auditEvents: number;
}

/** Rows in every table a sign-in writes to, read through the app's own Prisma client. */
export async function rowCounts(app: App): Promise<RowCounts> {
  const db = app.database.client;
  const [users, identities, sessions, refreshTokens, auditEvents] = await Promise.all([
    db.user.count(),
    db.identity.count(),
    db.session.count(),
    db.refreshToken.count(),
    db.auditEvent.count(),
  ]);
  return { users, identities, sessions, refreshTokens, auditEvents };
}

/** The audit rows written for the call that carried `requestId` (as x-request-id). */
export async function auditRowsOf(app: App, requestId: string) {
  return app.database.client.auditEvent.findMany({ where: { requestId } });
}

const remoteKeySets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

/**
 * Asserts the whole LoginResponse contract for a successful sign-in and returns the verified
 * access-token payload. The access token must verify (ES256) against `${url}/.well-known/jwks.json`.
 */
export async function expectLogin(url: string, login: LoginResponse) {
  expect(login.tokenType).toBe("Bearer");
  expect(login.expiresIn).toBe(1800);
  expect(login.requiresMfa).toBe(false);
  expect(login.mustChangePassword).toBe(false);
  expect(login.challengeToken).toBeUndefined();
  expect(login.passwordExpiresIn).toBeUndefined();
  expect(login.passwordWarning).toBeUndefined();
  // Every sign-in is risk-assessed; these tests' sign-ins need no second factor.
  expect(login.riskLevel).toMatch(/^(low|medium|high)$/);
  expect(login.riskAssessment?.level).toBe(login.riskLevel);
  expect(login.mfaCheckReason).toBeUndefined();
  expect(login.refreshToken).toMatch(/^rt_[A-Za-z0-9_-]{43}$/);
  const user = login.user;
  expect(user).toBeDefined();
  expect(user!.id).toMatch(/^usr_[0-9a-z]+$/);
  expect(user!.status).toBe("active");
  expect(user!.createdAt).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
  expect(Number.isNaN(Date.parse(user!.createdAt))).toBe(false);
  expect(login.userId).toBe(user!.id);

  let keys = remoteKeySets.get(url);
  if (keys === undefined) {
    keys = createRemoteJWKSet(new URL(`${url}/.well-known/jwks.json`));
    remoteKeySets.set(url, keys);
  }
  const { payload, protectedHeader } = await jwtVerify(login.accessToken!, keys, {
    issuer: LOCAL_ISSUER,
    audience: "identity",
    algorithms: ["ES256"],
    requiredClaims: ["sub", "iat", "exp", "jti", "aud"],
  });
  expect(protectedHeader.alg).toBe("ES256");
  expect(protectedHeader.kid).toEqual(expect.any(String));
  expect(payload.sub).toBe(user!.id);
  expect(payload["sid"]).toMatch(/^ses_[0-9a-z]+$/);
  expect(payload.exp! - payload.iat!).toBe(1800);
  return { payload, header: protectedHeader };
}

/**
 * Asserts the raw JSON of a LoginResponse uses the API's snake_case names, with the
 * always-present fields present and the not-applicable optional ones absent, then parses it.
 */
export function expectSnakeCaseLogin(json: Record<string, unknown>): LoginResponse {
  // An empty repeated field may be emitted as [] or left out; either way it holds nothing.
  const { required_mfa_methods: mfaMethods, ...fields } = json;
  if (mfaMethods !== undefined) expect(mfaMethods).toEqual([]);
  expect(Object.keys(fields).sort()).toEqual([
    "access_token",
    "expires_in",
    "must_change_password",
    "refresh_token",
    "requires_mfa",
    "risk_assessment",
    "risk_level",
    "token_type",
    "user",
    "user_id",
  ]);
  expect(json["requires_mfa"]).toBe(false);
  expect(json["must_change_password"]).toBe(false);
  expect(json["token_type"]).toBe("Bearer");
  expect(json["expires_in"]).toBe(1800);
  expect(json["risk_level"]).toBe((json["risk_assessment"] as Record<string, unknown>)["level"]);
  for (const absent of ["password_expires_in", "password_warning", "challenge_token", "mfa_check_reason"]) {
    expect(json).not.toHaveProperty(absent);
  }
  const user = json["user"] as Record<string, unknown>;
  const userKeys = Object.keys(user)
    .filter((k) => k !== "email" && k !== "phone")
    .sort();
  expect(userKeys).toEqual(["created_at", "id", "must_change_password", "status", "username"]);
  expect(user["must_change_password"]).toBe(false);
  return fromJson(LoginResponseSchema, json as JsonValue);
}

/**
 * The token with one character of its signature changed. A middle character, because the last
 * one of a base64url segment may carry padding bits that decoders ignore.
 */
export function tamperSignature(token: string): string {
  const [h, p, sig] = token.split(".");
  const at = Math.floor(sig!.length / 2);
  return `${h}.${p}.${sig!.slice(0, at)}${sig![at] === "A" ? "B" : "A"}${sig!.slice(at + 1)}`;
}

/** A clock the test moves; starts at real time. */
export function createMovableClock(): Clock & { advance(ms: number): void; reset(): void } {
  let offset = 0;
  return {
    now: () => new Date(Date.now() + offset),
    advance(ms) {
      offset += ms;
    },
    reset() {
      offset = 0;
    },
  };
}

/** A signer for hand-made ID tokens (for providers no real OP stands behind). */
export async function createTokenSigner(alg: "RS256" | "ES256" = "RS256") {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  const kid = `local-${randomUUID().slice(0, 8)}`;
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return {
    publicJwk,
    sign(
      claims: { iss: string; aud: string | string[]; sub: string; [claim: string]: unknown },
      lifetimeSeconds = 600,
    ) {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT(claims)
        .setProtectedHeader({ alg, kid, typ: "JWT" })
        .setIssuedAt(now)
        .setExpirationTime(now + lifetimeSeconds)
        .sign(privateKey);
    },
  };
}

/** `host:port` of an http:// base URL, as grpc-js wants it. */
export function grpcTarget(url: string): string {
  return new URL(url).host;
}

/**
 * Calls SigninWithIdToken with @grpc/grpc-js over cleartext HTTP/2 through a generic client
 * (no generated grpc-js stubs): the wire bytes come from the same protobuf-es schemas.
 */
export function grpcSignin(
  client: grpc.Client,
  request: MessageInitShape<typeof SigninWithIdTokenRequestSchema>,
  metadata: grpc.Metadata = new grpc.Metadata(),
  /** Null: no deadline, so no grpc-timeout header (the server's plain unary path). */
  deadlineMs: number | null = 10_000,
): Promise<{ response: LoginResponse } | { error: grpc.ServiceError }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      "/identity.v1.AuthService/SigninWithIdToken",
      (message: MessageInitShape<typeof SigninWithIdTokenRequestSchema>) =>
        Buffer.from(toBinary(SigninWithIdTokenRequestSchema, create(SigninWithIdTokenRequestSchema, message))),
      (bytes: Buffer) => fromBinary(LoginResponseSchema, bytes),
      request,
      metadata,
      deadlineMs === null ? {} : { deadline: Date.now() + deadlineMs },
      (error, response) => {
        if (error !== null) resolve({ error });
        else resolve({ response: response! });
      },
    );
  });
}

/** grpc-js metadata as Fetch Headers (binary values base64, as on the wire), for connect's parsers. */
export function metadataToHeaders(metadata: grpc.Metadata): Headers {
  const headers = new Headers();
  for (const [key, values] of Object.entries(metadata.getMap())) {
    headers.set(key, Buffer.isBuffer(values) ? values.toString("base64") : String(values));
  }
  return headers;
}

/** An ID token from the service's built-in dev issuer (dev mode), for `sub`. */
export async function devIdToken(url: string, sub: string, claims: Record<string, unknown> = {}): Promise<string> {
  const res = await fetch(`${url}/dev/oidc/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ sub, ...claims }),
  });
  if (res.status !== 200) throw new Error(`dev issuer answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { id_token: string }).id_token;
}
