/**
 * Adaptive MFA end to end, over REST against a real server on port 0: risk on every sign-in,
 * challenges instead of tokens, TOTP enrollment and completion, replay and expiry, attempts,
 * trusted devices, GeoIP (a .mmdb this test builds) and upstream MFA from a trusted provider.
 * ID tokens come from the built-in dev issuer (dev mode) and from hand-signed providers.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRemoteJWKSet, decodeJwt, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { UserService } from "../../gen/pb/identity/v1/user_service_pb.ts";
import { mintAdminKey } from "../../src/tokens/admin-keys.ts";
import { totpCode } from "../../src/tokens/totp.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { buildMmdb, cityRecord } from "../support/mmdb-writer.ts";
import * as grpc from "@grpc/grpc-js";
import { toBinary } from "@bufbuild/protobuf";
import { LoginResponseSchema } from "../../gen/pb/identity/v1/auth_service_pb.ts";
import {
  createMovableClock,
  createTokenSigner,
  devIdToken,
  grpcSignin,
  grpcTarget,
  LOCAL_ISSUER,
  uniqueSub,
} from "../support/signin-e2e.ts";

const BERLIN_IP = "203.0.113.10";
const FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const PARIS_IP = "192.0.2.20";
const SYDNEY_IP = "198.51.100.30";
const LISBON_IP = "100.64.0.40";
const ADMIN = mintAdminKey();

const geoDir = mkdtempSync(join(tmpdir(), "mfa-geo-"));
const GEOIP_DB = join(geoDir, "city.mmdb");
writeFileSync(
  GEOIP_DB,
  buildMmdb([
    { network: "203.0.113.0/24", data: cityRecord("DE", 52.52, 13.405) },
    { network: "192.0.2.0/24", data: cityRecord("FR", 48.8566, 2.3522) },
    { network: "198.51.100.0/24", data: cityRecord("AU", -33.8688, 151.2093) },
    { network: "100.64.0.0/16", data: cityRecord("PT", 38.7223, -9.1393) },
  ]),
);
afterAll(() => rmSync(geoDir, { recursive: true, force: true }));

interface Res {
  status: number;
  body: Record<string, unknown>;
}

/** A REST client for one app: JSON in and out, with the headers a device would send. */
function restClient(url: string) {
  async function call(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<Res> {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>) };
  }
  const deviceHeaders = (o: {
    device?: string | undefined;
    ip?: string | undefined;
    userAgent?: string | undefined;
  }) => ({
    ...(o.device === undefined ? {} : { "x-device-id": o.device }),
    ...(o.ip === undefined ? {} : { "x-forwarded-for": o.ip }),
    "user-agent": o.userAgent ?? "mfa-e2e/1.0",
  });
  return {
    call,
    mint({ sub, ...claims }: { sub: string; email?: string; amr?: string[] }): Promise<string> {
      return devIdToken(url, sub, claims);
    },
    signin(
      idToken: string,
      o: { device?: string; ip?: string; provider?: string; userAgent?: string; credential?: string } = {},
    ) {
      const body = {
        id_token: idToken,
        provider: o.provider ?? "dev",
        ...(o.credential === undefined ? {} : { device_credential: o.credential }),
      };
      return call("POST", "/auth/id-token/signin", body, deviceHeaders(o));
    },
    verify(
      body: { challenge_token: unknown; method: string; code: string; trust_device?: boolean },
      o: { device?: string; ip?: string; userAgent?: string } = {},
    ) {
      return call("POST", "/auth/mfa/verify", body, deviceHeaders(o));
    },
    authed(method: string, path: string, accessToken: string, body?: unknown) {
      return call(method, path, body ?? (method === "GET" ? undefined : {}), {
        authorization: `Bearer ${accessToken}`,
      });
    },
  };
}

/** Asserts a challenge response: requires_mfa, a chg_ token, methods, reason, risk, and no tokens. */
function expectChallenge(res: Res, reason: string) {
  expect(res.status).toBe(200);
  const b = res.body;
  expect(b["requires_mfa"]).toBe(true);
  expect(b["challenge_token"]).toMatch(/^chg_[A-Za-z0-9_-]{43}$/);
  expect(b["required_mfa_methods"]).toEqual(["totp", "recovery_code"]);
  expect(b["mfa_check_reason"]).toBe(reason);
  expect(b).not.toHaveProperty("access_token");
  expect(b).not.toHaveProperty("refresh_token");
  expect(b["expires_in"]).toBe(0);
  expect(b["risk_level"]).toMatch(/^(medium|high)$/);
  expect(b["risk_assessment"]).toMatchObject({
    level: b["risk_level"],
    require_mfa: true,
    recommended_mfa_methods: ["totp"],
  });
  // The signals that fired, strongest first: a signal given as the reason leads them.
  if (reason !== "policy") expect((b["risk_assessment"] as { signals: string[] }).signals[0]).toBe(reason);
  // Nothing personal before the second factor: what the client needs to
  // continue, and no user, user ID, e-mail, phone, username or password state.
  expect(Object.keys(b).sort()).toEqual([
    "challenge_token",
    "expires_in",
    "mfa_check_reason",
    "must_change_password",
    "required_mfa_methods",
    "requires_mfa",
    "risk_assessment",
    "risk_level",
    "token_type",
  ]);
  // Always present on the wire, and false here: the account's password state comes after the second factor.
  expect(b["must_change_password"]).toBe(false);
  expect(JSON.stringify(b)).not.toMatch(/@example\.com|usr_/);
  return b["challenge_token"] as string;
}

describe("adaptive MFA", () => {
  let testApp: TestApp;
  let api: ReturnType<typeof restClient>;
  const clock = createMovableClock();
  let jwks: ReturnType<typeof createRemoteJWKSet>;

  beforeAll(async () => {
    testApp = await startTestApp({
      config: {
        dev: true,
        // The test client is the "proxy": X-Forwarded-For then says where the user is.
        "server.trusted_proxies": ["127.0.0.1"],
        "risk.geoip_db": GEOIP_DB,
        admin: { api_keys: [{ name: "ops", sha256: ADMIN.sha256Hex }] },
      },
      overrides: { clock },
    });
    api = restClient(testApp.url);
    jwks = createRemoteJWKSet(new URL(`${testApp.url}/.well-known/jwks.json`));
  });
  afterAll(async () => {
    await testApp?.close();
  });

  /** Moves to the start of the next TOTP step, so a fresh code is never a replay of the last. */
  const nextStep = () => clock.advance(30_000 - (clock.now().getTime() % 30_000) + 1000);
  const code = (secret: string) => totpCode(secret, clock.now());
  const db = () => testApp.app.database.client;

  /** Enrolls and confirms a new authenticator on the session of `access`; returns the recovery codes. */
  async function enrolledUserOn(access: string): Promise<string[]> {
    const secret = (await api.authed("POST", "/auth/mfa/totp/enroll", access)).body["secret"] as string;
    nextStep();
    const confirm = await api.authed("POST", "/auth/mfa/totp/confirm", access, { code: code(secret) });
    expect(confirm.status).toBe(200);
    return confirm.body["recovery_codes"] as string[];
  }

  /** First sign-in (device A, Berlin), then TOTP enrollment and confirmation with a first code. */
  async function enrolledUser(label: string, o: { device?: string; ip?: string } = {}) {
    const sub = uniqueSub(label);
    const first = await api.signin(await api.mint({ sub, email: `${sub}@example.com` }), {
      device: o.device ?? `${sub}-A`,
      ip: o.ip ?? BERLIN_IP,
    });
    expect(first.status).toBe(200);
    expect(first.body["requires_mfa"]).toBe(false);
    expect(first.body["risk_level"]).toBe("low");
    const access = first.body["access_token"] as string;

    const enroll = await api.authed("POST", "/auth/mfa/totp/enroll", access);
    expect(enroll.status).toBe(200);
    const secret = enroll.body["secret"] as string;
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    expect(enroll.body["otpauth_uri"]).toMatch(/^otpauth:\/\/totp\/Identity:.+\?.*secret=/);
    expect(enroll.body).toMatchObject({ digits: 6, period: 30, algorithm: "SHA1" });
    expect((await api.authed("GET", "/auth/mfa", access)).body).toEqual({
      totp_enabled: false,
      totp_pending: true,
      recovery_codes_left: 0,
      passkeys: 0,
    });

    nextStep();
    const confirm = await api.authed("POST", "/auth/mfa/totp/confirm", access, { code: code(secret) });
    expect(confirm.status).toBe(200);
    const recoveryCodes = confirm.body["recovery_codes"] as string[];
    expect(recoveryCodes).toHaveLength(10);
    expect((await api.authed("GET", "/auth/mfa", access)).body).toEqual({
      totp_enabled: true,
      totp_pending: false,
      recovery_codes_left: 10,
      passkeys: 0,
    });
    const userId = first.body["user_id"] as string;
    return {
      sub,
      userId,
      access,
      secret,
      recoveryCodes,
      refresh: first.body["refresh_token"] as string,
      signedInAt: decodeJwt(access)["iat"]!,
    };
  }

  it("enroll on a first sign-in; a new device is challenged; a wrong code is counted; the right TOTP code completes", async () => {
    const u = await enrolledUser("main");
    const sessionsBefore = await db().session.count({ where: { userId: u.userId } });

    const challenged = await api.signin(await api.mint({ sub: u.sub }), { device: `${u.sub}-B`, ip: BERLIN_IP });
    const token = expectChallenge(challenged, "new_device");
    expect(challenged.body["risk_assessment"]).toMatchObject({ level: "medium", score: 30 });
    // No session, no refresh token: only the challenge (stored hashed) and the audit record.
    expect(await db().session.count({ where: { userId: u.userId } })).toBe(sessionsBefore);
    const row = await db().mfaChallenge.findFirstOrThrow({ where: { userId: u.userId } });
    expect(row.tokenHash).not.toContain(token.slice(4));
    const mfaRequired = await db().auditEvent.findFirstOrThrow({
      where: { userId: u.userId, type: "signin.mfa_required" },
    });
    expect(JSON.parse(mfaRequired.detail!)).toMatchObject({
      account: "existing",
      risk: {
        score: 30,
        level: "medium",
        decision: "challenge",
        reason: "new_device",
        signals: [{ code: "new_device", weight: 30 }],
        device: "id",
      },
    });

    nextStep();
    const right = code(u.secret);
    const wrong = String((Number(right) + 1) % 1_000_000).padStart(6, "0");
    const bad = await api.verify({ challenge_token: token, method: "totp", code: wrong }, { device: `${u.sub}-B` });
    expect(bad.status).toBe(403);
    expect(bad.body).toMatchObject({ code: "mfa_code_invalid", details: { attempts_left: "4" } });
    expect((await db().mfaChallenge.findUniqueOrThrow({ where: { id: row.id } })).attempts).toBe(1);

    const ok = await api.verify({ challenge_token: token, method: "totp", code: right }, { device: `${u.sub}-B` });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({
      requires_mfa: false,
      token_type: "Bearer",
      expires_in: 1800,
      user_id: u.userId,
      risk_level: "medium",
    });
    expect(ok.body["refresh_token"]).toMatch(/^rt_/);
    expect(ok.body).not.toHaveProperty("challenge_token");
    const { payload } = await jwtVerify(ok.body["access_token"] as string, jwks, {
      issuer: LOCAL_ISSUER,
      algorithms: ["ES256"],
    });
    expect(payload.sub).toBe(u.userId);
    expect(payload["amr"]).toEqual(["fed", "otp", "mfa"]);
    expect(await db().session.count({ where: { userId: u.userId } })).toBe(sessionsBefore + 1);
    expect(await db().mfaChallenge.findUniqueOrThrow({ where: { id: row.id } })).toMatchObject({
      attempts: 2,
      consumedReason: "completed",
    });
    const audit = await db().auditEvent.findMany({
      where: { userId: u.userId, type: { in: ["mfa.verify_failed", "signin.succeeded"] } },
      orderBy: { at: "asc" },
    });
    expect(audit.map((a) => [a.type, a.code])).toEqual([
      ["signin.succeeded", null],
      ["mfa.verify_failed", "mfa_code_invalid"],
      ["signin.succeeded", null],
    ]);
    expect(JSON.parse(audit[2]!.detail!)).toMatchObject({ mfa: { method: "totp", challenge_id: row.id } });

    // The access token works, and the refresh keeps the MFA amr.
    expect((await api.authed("GET", "/auth/me", ok.body["access_token"] as string)).status).toBe(200);
    const refreshed = await api.call("POST", "/auth/token/refresh", { refresh_token: ok.body["refresh_token"] });
    expect(decodeJwt(refreshed.body["access_token"] as string)["amr"]).toEqual(["fed", "otp", "mfa"]);
  });

  it("a challenge answer over gRPC carries nothing personal either", async () => {
    const u = await enrolledUser("grpc-private");
    const client = new grpc.Client(grpcTarget(testApp.url), grpc.credentials.createInsecure());
    try {
      const md = new grpc.Metadata();
      md.set("x-device-id", `${u.sub}-grpc`);
      const out = await grpcSignin(
        client,
        { idToken: await api.mint({ sub: u.sub, email: `${u.sub}@example.com` }), provider: "dev" },
        md,
      );
      if (!("response" in out)) throw out.error;
      const r = out.response;
      expect(r).toMatchObject({
        requiresMfa: true,
        mfaCheckReason: "new_device",
        requiredMfaMethods: ["totp", "recovery_code"],
        riskLevel: "medium",
      });
      expect(r.challengeToken).toMatch(/^chg_/);
      expect(r.user).toBeUndefined();
      expect(r.userId).toBeUndefined();
      const wire = Buffer.from(toBinary(LoginResponseSchema, r)).toString("latin1");
      expect(wire).not.toContain(u.sub);
      expect(wire).not.toContain("example.com");
      expect(wire).not.toContain(u.userId);
    } finally {
      client.close();
    }
  });

  it("the same TOTP code twice is a replay, on another challenge too", async () => {
    const u = await enrolledUser("totp-replay");
    nextStep();
    const c = code(u.secret);
    const first = expectChallenge(
      await api.signin(await api.mint({ sub: u.sub }), { device: `${u.sub}-B`, ip: BERLIN_IP }),
      "new_device",
    );
    expect(
      (await api.verify({ challenge_token: first, method: "totp", code: c }, { device: `${u.sub}-B` })).status,
    ).toBe(200);
    const second = expectChallenge(
      await api.signin(await api.mint({ sub: u.sub }), { device: `${u.sub}-C`, ip: BERLIN_IP }),
      "new_device",
    );
    const replay = await api.verify({ challenge_token: second, method: "totp", code: c }, { device: `${u.sub}-C` });
    expect(replay.status).toBe(403);
    expect(replay.body["code"]).toBe("mfa_code_invalid");
  });

  it("a replayed challenge is refused: challenge_invalid", async () => {
    const u = await enrolledUser("replay");
    const token = expectChallenge(
      await api.signin(await api.mint({ sub: u.sub }), { device: `${u.sub}-B`, ip: BERLIN_IP }),
      "new_device",
    );
    nextStep();
    const c = code(u.secret);
    expect(
      (await api.verify({ challenge_token: token, method: "totp", code: c }, { device: `${u.sub}-B` })).status,
    ).toBe(200);
    nextStep();
    const again = await api.verify(
      { challenge_token: token, method: "totp", code: code(u.secret) },
      { device: `${u.sub}-B` },
    );
    expect(again.status).toBe(401);
    expect(again.body["code"]).toBe("challenge_invalid");
    const unknown = await api.verify({ challenge_token: `chg_${"A".repeat(43)}`, method: "totp", code: "123456" });
    expect(unknown.body["code"]).toBe("challenge_invalid");
    const malformed = await api.verify({ challenge_token: "rt_nope", method: "totp", code: "123456" });
    expect(malformed.body["code"]).toBe("challenge_invalid");
  });

  it("an expired challenge is refused: challenge_expired (5 minutes by default)", async () => {
    const u = await enrolledUser("expired");
    const token = expectChallenge(
      await api.signin(await api.mint({ sub: u.sub }), { device: `${u.sub}-B`, ip: BERLIN_IP }),
      "new_device",
    );
    clock.advance(301_000);
    const late = await api.verify(
      { challenge_token: token, method: "totp", code: code(u.secret) },
      { device: `${u.sub}-B` },
    );
    expect(late.status).toBe(401);
    expect(late.body["code"]).toBe("challenge_expired");
  });

  it("a challenge issued to a device is completed only by that device", async () => {
    const u = await enrolledUser("bound");
    const token = expectChallenge(
      await api.signin(await api.mint({ sub: u.sub }), { device: `${u.sub}-B`, ip: BERLIN_IP }),
      "new_device",
    );
    nextStep();
    const elsewhere = await api.verify(
      { challenge_token: token, method: "totp", code: code(u.secret) },
      { device: "attacker" },
    );
    expect(elsewhere.status).toBe(401);
    expect(elsewhere.body["code"]).toBe("challenge_invalid");
  });

  it("five wrong codes kill the challenge (audited); the right code is refused afterwards", async () => {
    const u = await enrolledUser("exhaust");
    const token = expectChallenge(
      await api.signin(await api.mint({ sub: u.sub }), { device: `${u.sub}-B`, ip: BERLIN_IP }),
      "new_device",
    );
    nextStep();
    const right = code(u.secret);
    const wrong = String((Number(right) + 7) % 1_000_000).padStart(6, "0");
    const answers = [];
    for (let i = 0; i < 5; i++)
      answers.push(await api.verify({ challenge_token: token, method: "totp", code: wrong }, { device: `${u.sub}-B` }));
    expect(answers.map((a) => a.body["code"])).toEqual([
      "mfa_code_invalid",
      "mfa_code_invalid",
      "mfa_code_invalid",
      "mfa_code_invalid",
      "challenge_exhausted",
    ]);
    expect(answers.slice(0, 4).map((a) => (a.body["details"] as Record<string, string>)["attempts_left"])).toEqual([
      "4",
      "3",
      "2",
      "1",
    ]);
    const after = await api.verify({ challenge_token: token, method: "totp", code: right }, { device: `${u.sub}-B` });
    expect(after.body["code"]).toBe("challenge_exhausted");
    expect(await db().auditEvent.count({ where: { userId: u.userId, type: "mfa.challenge_exhausted" } })).toBe(1);
    expect(await db().mfaChallenge.findFirstOrThrow({ where: { userId: u.userId } })).toMatchObject({
      consumedReason: "exhausted",
      attempts: 5,
    });
  });

  it("a recovery code completes a challenge once", async () => {
    const u = await enrolledUser("recovery");
    const token = expectChallenge(
      await api.signin(await api.mint({ sub: u.sub }), { device: `${u.sub}-B`, ip: BERLIN_IP }),
      "new_device",
    );
    const ok = await api.verify(
      { challenge_token: token, method: "recovery_code", code: u.recoveryCodes[0]!.toUpperCase() },
      { device: `${u.sub}-B` },
    );
    expect(ok.status).toBe(200);
    expect(decodeJwt(ok.body["access_token"] as string)["amr"]).toEqual(["fed", "recovery_code", "mfa"]);
    const token2 = expectChallenge(
      await api.signin(await api.mint({ sub: u.sub }), { device: `${u.sub}-C`, ip: BERLIN_IP }),
      "new_device",
    );
    const reused = await api.verify(
      { challenge_token: token2, method: "recovery_code", code: u.recoveryCodes[0]! },
      { device: `${u.sub}-C` },
    );
    expect(reused.body["code"]).toBe("mfa_code_invalid");
    expect((await api.authed("GET", "/auth/mfa", u.access)).body["recovery_codes_left"]).toBe(9);
  });

  /**
   * A challenge from a new device completed with `trust_device`: resolves with the device
   * credential the answer carried (shown this once) and the answer itself.
   */
  async function trust(
    u: { sub: string; secret: string },
    device = `${u.sub}-T${Math.random().toString(36).slice(2, 8)}`,
  ) {
    const token = expectChallenge(
      await api.signin(await api.mint({ sub: u.sub }), { device, ip: BERLIN_IP, userAgent: FIREFOX_LINUX }),
      "new_device",
    );
    nextStep();
    const ok = await api.verify(
      { challenge_token: token, method: "totp", code: code(u.secret), trust_device: true },
      { device, userAgent: FIREFOX_LINUX },
    );
    expect(ok.status).toBe(200);
    const credential = ok.body["device_credential"] as string;
    expect(credential).toMatch(/^tdc_[A-Za-z0-9_-]{43}$/);
    return { credential, device, answer: ok.body };
  }

  /** A medium-risk sign-in (a device never seen: `new_device`) presenting `credential`. */
  const fromNewDevice = async (sub: string, credential?: string) =>
    api.signin(await api.mint({ sub }), {
      device: `fresh-${Math.random().toString(36).slice(2)}`,
      ip: BERLIN_IP,
      ...(credential === undefined ? {} : { credential }),
    });
  const expectSkips = async (sub: string, credential: string) => {
    const res = await fromNewDevice(sub, credential);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ requires_mfa: false, risk_level: "medium" });
    return res.body;
  };
  const expectChallenged = async (sub: string, credential: string) =>
    expectChallenge(await fromNewDevice(sub, credential), "new_device");

  it("trust is a credential issued once, stored only as its hash, that skips MFA for its own user only", async () => {
    const u = await enrolledUser("trusted");
    const { credential, device, answer } = await trust(u);
    // Shown once: the row holds its SHA-256, bound to the user, with what a person recognises.
    const rows = await db().trustedDevice.findMany({ where: { userId: u.userId } });
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row.credentialHash).toBe(createHash("sha256").update(credential).digest("base64url"));
    expect(JSON.stringify(rows)).not.toContain(credential.slice(4));
    expect(row.label).toBe("firefox/linux");
    expect(row.lastUsedAt).toEqual(row.createdAt);
    expect(Math.abs(row.createdAt.getTime() - clock.now().getTime())).toBeLessThan(5000);
    expect(row.expiresAt.getTime() - row.createdAt.getTime()).toBe(30 * 86_400_000);
    // No other answer carries it: not the sessions list, not /auth/me, not a later sign-in.
    const access = answer["access_token"] as string;
    for (const path of ["/auth/sessions", "/auth/me", "/auth/mfa"]) {
      expect(JSON.stringify((await api.authed("GET", path, access)).body)).not.toContain(credential);
    }

    // From a medium-risk context the credential goes straight in, and its use is recorded.
    clock.advance(3_600_000);
    const skipped = await expectSkips(u.sub, credential);
    expect(skipped).not.toHaveProperty("device_credential");
    const audit = await db().auditEvent.findFirstOrThrow({
      where: { userId: u.userId, type: "signin.succeeded" },
      orderBy: { at: "desc" },
    });
    expect(JSON.parse(audit.detail!)).toMatchObject({
      risk: { level: "medium", decision: "allow", skipped_by: "trusted_device", trusted_device: true },
    });
    expect(
      (await db().trustedDevice.findUniqueOrThrow({ where: { id: row.id } })).lastUsedAt.getTime() -
        row.createdAt.getTime(),
    ).toBeGreaterThanOrEqual(3_600_000);

    // The device id the trusted device sent is only a label: sent alone (read from anywhere, or
    // guessed), from a medium-risk context, it is challenged.
    clock.advance(6 * 3_600_000);
    const byDeviceId = await api.signin(await api.mint({ sub: u.sub }), { device, ip: PARIS_IP });
    expectChallenge(byDeviceId, "new_country");
    // Another user presenting it is challenged as if none was sent; so is a made-up one.
    const other = await enrolledUser("trusted-other");
    await expectChallenged(other.sub, credential);
    await expectChallenged(u.sub, `tdc_${"A".repeat(43)}`);
    // Without trust_device, no credential is issued.
    const token = expectChallenge(
      await api.signin(await api.mint({ sub: u.sub }), { device: `${u.sub}-plain`, ip: BERLIN_IP }),
      "new_device",
    );
    nextStep();
    const plain = await api.verify(
      { challenge_token: token, method: "totp", code: code(u.secret) },
      { device: `${u.sub}-plain` },
    );
    expect(plain.status).toBe(200);
    expect(plain.body).not.toHaveProperty("device_credential");
    expect(await db().trustedDevice.count({ where: { userId: u.userId } })).toBe(1);
  });

  describe("trust ends", () => {
    const adminCall = (path: string, body: unknown = {}) =>
      api.call("POST", path, body, { authorization: `Bearer ${ADMIN.key}` });

    it("on sign-out everywhere (not on signing out one session)", async () => {
      const u = await enrolledUser("end-signout");
      const { credential, answer } = await trust(u);
      expect((await api.authed("POST", "/auth/signout", answer["access_token"] as string)).status).toBe(200);
      const again = await expectSkips(u.sub, credential);
      expect(
        (await api.authed("POST", "/auth/signout", again["access_token"] as string, { all_sessions: true })).status,
      ).toBe(200);
      await expectChallenged(u.sub, credential);
    });

    it("on a password change", async () => {
      const u = await enrolledUser("end-password");
      const { credential, answer } = await trust(u);
      const changed = await api.authed("POST", "/auth/password/change", answer["access_token"] as string, {
        new_password: "correct horse battery staple 7",
      });
      expect(changed.status).toBe(200);
      await expectChallenged(u.sub, credential);
    });

    it("on an operator's disable and lock (and does not come back with enable or unlock)", async () => {
      const u = await enrolledUser("end-admin");
      const first = await trust(u);
      expect((await adminCall(`/admin/users/${u.userId}/disable`, { reason: "test" })).status).toBe(200);
      expect((await adminCall(`/admin/users/${u.userId}/enable`)).status).toBe(200);
      await expectChallenged(u.sub, first.credential);
      const second = await trust(u);
      expect((await adminCall(`/admin/users/${u.userId}/lock`, {})).status).toBe(200);
      expect((await adminCall(`/admin/users/${u.userId}/unlock`)).status).toBe(200);
      await expectChallenged(u.sub, second.credential);
    });

    it("on removal of the second factor", async () => {
      const u = await enrolledUser("end-factor");
      const { credential } = await trust(u);
      nextStep();
      expect((await api.authed("POST", "/auth/mfa/totp/disable", u.access, { code: code(u.secret) })).status).toBe(200);
      expect(await db().trustedDevice.count({ where: { userId: u.userId } })).toBe(0);
      // With a new authenticator, the old credential skips nothing.
      const enroll = await api.authed("POST", "/auth/mfa/totp/enroll", u.access);
      const secret = enroll.body["secret"] as string;
      nextStep();
      expect(
        (await api.authed("POST", "/auth/mfa/totp/confirm", u.access, { code: totpCode(secret, clock.now()) })).status,
      ).toBe(200);
      await expectChallenged(u.sub, credential);
    });

    it('on "forget this device" over REST and Connect, for the caller\'s own devices only', async () => {
      const u = await enrolledUser("end-forget");
      const a = await trust(u);
      const b = await trust(u);
      const access = a.answer["access_token"] as string;
      // Someone else's access token cannot forget this user's device.
      const other = await enrolledUser("end-forget-other");
      expect(
        (await api.authed("POST", "/auth/devices/forget", other.access, { device_credential: a.credential })).body,
      ).toEqual({ forgotten_devices: 0 });
      expect((await api.authed("POST", "/auth/devices/forget", access, {})).body["code"]).toBe("invalid_request");
      expect(
        (await api.authed("POST", "/auth/devices/forget", access, { device_credential: a.credential })).body,
      ).toEqual({ forgotten_devices: 1 });
      await expectChallenged(u.sub, a.credential);
      await expectSkips(u.sub, b.credential);
      const users = createClient(UserService, createConnectTransport({ baseUrl: testApp.url, httpVersion: "1.1" }));
      expect(
        (await users.forgetDevice({ allDevices: true }, { headers: { authorization: `Bearer ${access}` } }))
          .forgottenDevices,
      ).toBe(1);
      await expectChallenged(u.sub, b.credential);
    });

    it("after mfa.trusted_device_days", async () => {
      const u = await enrolledUser("end-expiry");
      const { credential } = await trust(u);
      clock.advance(30 * 86_400_000 - 60_000);
      await expectSkips(u.sub, credential);
      clock.advance(120_000);
      await expectChallenged(u.sub, credential);
    });
  });

  it("a trusted device skips MFA at medium risk; an untrusted known device does not", async () => {
    const u = await enrolledUser("trusted-paris");
    const trusted = `${u.sub}-B`;
    const { credential } = await trust(u, trusted);

    // From Paris: a new network and a new country, medium. The trusted device goes straight in.
    clock.advance(6 * 3_600_000);
    const fromParis = await api.signin(await api.mint({ sub: u.sub }), { device: trusted, ip: PARIS_IP, credential });
    expect(fromParis.status).toBe(200);
    expect(fromParis.body).toMatchObject({ requires_mfa: false, risk_level: "medium" });
    expect(fromParis.body["access_token"]).toBeDefined();
    const audit = await db().auditEvent.findFirstOrThrow({
      where: { userId: u.userId, type: "signin.succeeded" },
      orderBy: { at: "desc" },
    });
    expect(JSON.parse(audit.detail!)).toMatchObject({
      risk: { level: "medium", decision: "allow", skipped_by: "trusted_device", trusted_device: true, country: "FR" },
    });
    expect(JSON.parse(audit.detail!).risk.signals.map((s: { code: string }) => s.code)).toEqual([
      "new_country",
      "new_network",
    ]);

    // Device A is known but was never trusted: from Lisbon (new network, new country) it is challenged.
    clock.advance(6 * 3_600_000);
    const fromLisbon = await api.signin(await api.mint({ sub: u.sub }), { device: `${u.sub}-A`, ip: LISBON_IP });
    expectChallenge(fromLisbon, "new_country");
  });

  it("impossible travel: Berlin, then Sydney an hour later, is high risk", async () => {
    const u = await enrolledUser("travel");
    clock.advance(3_600_000);
    const res = await api.signin(await api.mint({ sub: u.sub }), { device: `${u.sub}-A`, ip: SYDNEY_IP });
    expectChallenge(res, "impossible_travel");
    expect(res.body["risk_level"]).toBe("high");
  });

  it("a user with no factor is let in at medium risk with the enrollment signal, and refused at high", async () => {
    const sub = uniqueSub("unenrolled");
    const first = await api.signin(await api.mint({ sub }), { device: `${sub}-A`, ip: BERLIN_IP });
    expect(first.status).toBe(200);
    const medium = await api.signin(await api.mint({ sub }), { device: `${sub}-B`, ip: BERLIN_IP });
    expect(medium.status).toBe(200);
    expect(medium.body).toMatchObject({
      requires_mfa: false,
      mfa_check_reason: "mfa_enrollment_required",
      risk_level: "medium",
    });
    expect(medium.body["risk_assessment"]).toMatchObject({ require_mfa: true });
    expect(medium.body["access_token"]).toBeDefined();

    clock.advance(3_600_000);
    const sessions = await db().session.count();
    const high = await api.signin(await api.mint({ sub }), { device: `${sub}-C`, ip: SYDNEY_IP });
    expect(high.status).toBe(403);
    expect(high.body["code"]).toBe("mfa_enrollment_required");
    expect(await db().session.count()).toBe(sessions);
    const refused = await db().auditEvent.findFirstOrThrow({
      where: { type: "signin.failed", code: "mfa_enrollment_required" },
    });
    expect(JSON.parse(refused.detail!)).toMatchObject({
      risk: { level: "high", decision: "deny", reason: "impossible_travel" },
    });
  });

  describe("TOTP management", () => {
    it("enrolling again while active is refused; disable needs a current code; replay of it is refused", async () => {
      const u = await enrolledUser("manage");
      expect((await api.authed("POST", "/auth/mfa/totp/enroll", u.access)).body["code"]).toBe("totp_already_enrolled");
      expect((await api.authed("POST", "/auth/mfa/totp/disable", u.access, { code: "000000" })).body["code"]).toBe(
        "mfa_code_invalid",
      );
      expect((await api.authed("POST", "/auth/mfa/totp/disable", u.access, { code: "" })).body["code"]).toBe(
        "mfa_code_required",
      );
      nextStep();
      const regenerated = await api.authed("POST", "/auth/mfa/recovery-codes", u.access, { code: code(u.secret) });
      expect(regenerated.status).toBe(200);
      expect(regenerated.body["recovery_codes"]).toHaveLength(10);
      // Same step again: a replay.
      expect(
        (await api.authed("POST", "/auth/mfa/totp/disable", u.access, { code: code(u.secret) })).body["code"],
      ).toBe("mfa_code_invalid");
      nextStep();
      expect((await api.authed("POST", "/auth/mfa/totp/disable", u.access, { code: code(u.secret) })).status).toBe(200);
      expect((await api.authed("GET", "/auth/mfa", u.access)).body).toEqual({
        totp_enabled: false,
        totp_pending: false,
        recovery_codes_left: 0,
        passkeys: 0,
      });
      // The secret is stored sealed, never in clear.
      expect(await db().mfaFactor.count({ where: { userId: u.userId } })).toBe(0);
    });

    it("wrong codes are budgeted per user: fresh challenges do not buy fresh guesses", async () => {
      const u = await enrolledUser("throttle");
      const device = `${u.sub}-B`;
      nextStep();
      const right = code(u.secret);
      const wrong = String((Number(right) + 3) % 1_000_000).padStart(6, "0");
      // Two challenges used up: 10 wrong codes, the default budget per 15 minutes.
      for (let n = 0; n < 2; n++) {
        const token = expectChallenge(
          await api.signin(await api.mint({ sub: u.sub }), { device, ip: BERLIN_IP }),
          "new_device",
        );
        for (let i = 0; i < 5; i++)
          await api.verify({ challenge_token: token, method: "totp", code: wrong }, { device });
      }
      const third = await api.signin(await api.mint({ sub: u.sub }), { device, ip: BERLIN_IP });
      // The failures also raise the risk of the next sign-in.
      expect(third.body["risk_assessment"]).toMatchObject({ score: 50 });
      const token = expectChallenge(third, "new_device");
      const refused = await api.verify({ challenge_token: token, method: "totp", code: right }, { device });
      expect(refused.status).toBe(429);
      expect(refused.body["code"]).toBe("rate_limited");
      // When the oldest counted wrong code leaves the 15-minute window: less than the window.
      const retry = Number((refused.body["details"] as Record<string, string>)["retry_after_seconds"]);
      expect(retry).toBeGreaterThan(0);
      expect(retry).toBeLessThanOrEqual(900);
      expect((await api.authed("POST", "/auth/mfa/totp/disable", u.access, { code: right })).body["code"]).toBe(
        "rate_limited",
      );

      // The window passes: the right code works again (the challenge has expired meanwhile).
      clock.advance(15 * 60_000);
      const fresh = expectChallenge(
        await api.signin(await api.mint({ sub: u.sub }), { device, ip: BERLIN_IP }),
        "new_device",
      );
      nextStep();
      expect(
        (await api.verify({ challenge_token: fresh, method: "totp", code: code(u.secret) }, { device })).status,
      ).toBe(200);
    });

    it("changing factors needs a recent second factor; StepUp completes one on the session and says so in the token", async () => {
      const u = await enrolledUser("stepup");
      // The sign-in's token carries auth_time (seconds) and the federated amr.
      expect(decodeJwt(u.access)).toMatchObject({ auth_time: u.signedInAt, amr: ["fed"] });
      // ConfirmTotp was a second factor on this session: changes are allowed right after it.
      nextStep();
      expect((await api.authed("POST", "/auth/mfa/recovery-codes", u.access, { code: code(u.secret) })).status).toBe(
        200,
      );

      // Eleven minutes later the same token (a stolen one, say) can change nothing, and is told how to step up.
      clock.advance(11 * 60_000);
      nextStep();
      const refused = await api.authed("POST", "/auth/mfa/totp/disable", u.access, { code: code(u.secret) });
      expect(refused).toMatchObject({
        status: 403,
        body: {
          code: "reauthentication_required",
          details: {
            step_up: "MfaService.StepUp",
            step_up_route: "POST /auth/mfa/step-up",
            step_up_methods: "totp,recovery_code",
            max_age_seconds: "600",
          },
        },
      });
      // No passkey: the passkey way is not offered.
      expect((refused.body["details"] as Record<string, unknown>)["step_up_begin"]).toBeUndefined();
      expect(refused.body["message"]).toContain("/auth/mfa/step-up");
      expect(
        (await api.authed("POST", "/auth/mfa/recovery-codes", u.access, { code: code(u.secret) })).body["code"],
      ).toBe("reauthentication_required");
      // The refusals spent nothing: the factor and its codes are as they were.
      expect((await api.authed("GET", "/auth/mfa", u.access)).body).toMatchObject({
        totp_enabled: true,
        recovery_codes_left: 10,
      });

      // StepUp: a wrong code is refused (and counted), an unknown method too; the right code steps up.
      expect(
        (await api.authed("POST", "/auth/mfa/step-up", u.access, { method: "totp", code: "000000" })).body["code"],
      ).toMatch(/^mfa_code_invalid$/);
      expect(
        (await api.authed("POST", "/auth/mfa/step-up", u.access, { method: "sms", code: "123456" })).body["code"],
      ).toBe("mfa_method_not_available");
      const stepped = await api.authed("POST", "/auth/mfa/step-up", u.access, { method: "totp", code: code(u.secret) });
      expect(stepped).toMatchObject({ status: 200, body: { expires_in: 1800, max_age: 600 } });
      const claims = decodeJwt(stepped.body["access_token"] as string);
      // Same session and sign-in time; the factor joins the methods.
      expect(claims).toMatchObject({
        sid: decodeJwt(u.access)["sid"],
        auth_time: u.signedInAt,
        amr: ["fed", "otp", "mfa"],
      });
      expect(await db().auditEvent.count({ where: { userId: u.userId, type: "mfa.step_up" } })).toBe(1);

      // A refresh keeps the session's auth_time and amr.
      const refreshed = await api.call("POST", "/auth/token/refresh", { refresh_token: u.refresh });
      expect(decodeJwt(refreshed.body["access_token"] as string)).toMatchObject({
        auth_time: u.signedInAt,
        amr: ["fed", "otp", "mfa"],
      });

      // Now (either token of the session) the change goes through.
      nextStep();
      expect((await api.authed("POST", "/auth/mfa/totp/disable", u.access, { code: code(u.secret) })).status).toBe(200);

      // A recovery code steps up too (spent once): enroll again within the window, then later.
      const again = await enrolledUserOn(u.access);
      clock.advance(11 * 60_000);
      const byRecovery = await api.authed("POST", "/auth/mfa/step-up", u.access, {
        method: "recovery_code",
        code: again[0],
      });
      expect(byRecovery.status).toBe(200);
      expect(decodeJwt(byRecovery.body["access_token"] as string)["amr"]).toEqual([
        "fed",
        "otp",
        "mfa",
        "recovery_code",
      ]);
      expect(
        (await api.authed("POST", "/auth/mfa/step-up", u.access, { method: "recovery_code", code: again[0] })).body[
          "code"
        ],
      ).toBe("mfa_code_invalid");
    });

    it("without a factor, adding one needs a recent sign-in: a stolen token cannot plant a factor later", async () => {
      const sub = uniqueSub("plant");
      const first = await api.signin(await api.mint({ sub }), { device: `${sub}-A`, ip: BERLIN_IP });
      const stale = first.body["access_token"] as string;
      clock.advance(11 * 60_000);
      const refused = await api.authed("POST", "/auth/mfa/totp/enroll", stale);
      expect(refused).toMatchObject({
        status: 403,
        body: {
          code: "reauthentication_required",
          details: {
            step_up: "AuthService.SigninWithIdToken",
            step_up_route: "POST /auth/id-token/signin",
            max_age_seconds: "600",
          },
        },
      });
      // A refresh is no new sign-in: its token is refused as well.
      const refreshed = await api.call("POST", "/auth/token/refresh", { refresh_token: first.body["refresh_token"] });
      expect(
        (await api.authed("POST", "/auth/mfa/totp/enroll", refreshed.body["access_token"] as string)).body["code"],
      ).toBe("reauthentication_required");
      expect((await api.authed("GET", "/auth/mfa", stale)).body).toEqual({
        totp_enabled: false,
        totp_pending: false,
        recovery_codes_left: 0,
        passkeys: 0,
      });
      // StepUp has nothing to step up with: it says so.
      expect(
        (await api.authed("POST", "/auth/mfa/step-up", stale, { method: "totp", code: "123456" })).body["code"],
      ).toBe("totp_not_enrolled");

      // Enrolled right after a fresh sign-in, but confirmed too late: refused as well.
      const fresh = await api.signin(await api.mint({ sub }), { device: `${sub}-A`, ip: BERLIN_IP });
      const access = fresh.body["access_token"] as string;
      const secret = (await api.authed("POST", "/auth/mfa/totp/enroll", access)).body["secret"] as string;
      clock.advance(11 * 60_000);
      nextStep();
      expect((await api.authed("POST", "/auth/mfa/totp/confirm", access, { code: code(secret) })).body["code"]).toBe(
        "reauthentication_required",
      );
    });

    it("a session opened by a completed challenge may change factors at once", async () => {
      const u = await enrolledUser("challenged");
      clock.advance(11 * 60_000);
      const device = `${u.sub}-B`;
      const token = expectChallenge(
        await api.signin(await api.mint({ sub: u.sub }), { device, ip: BERLIN_IP }),
        "new_device",
      );
      nextStep();
      const done = await api.verify({ challenge_token: token, method: "totp", code: code(u.secret) }, { device });
      expect(done.status).toBe(200);
      expect(decodeJwt(done.body["access_token"] as string)).toMatchObject({ amr: ["fed", "otp", "mfa"] });
      nextStep();
      expect(
        (
          await api.authed("POST", "/auth/mfa/recovery-codes", done.body["access_token"] as string, {
            code: code(u.secret),
          })
        ).status,
      ).toBe(200);
    });

    it("stores the TOTP secret sealed", async () => {
      const u = await enrolledUser("sealed");
      const row = await db().mfaFactor.findFirstOrThrow({ where: { userId: u.userId } });
      expect(row.secretEnc).toMatch(/^v1\./);
      expect(row.secretEnc).not.toContain(u.secret);
    });

    it("needs an access token", async () => {
      const res = await api.call("POST", "/auth/mfa/totp/enroll", {});
      expect(res.status).toBe(401);
      expect(res.body["code"]).toBe("access_token_required");
    });
  });
});

describe("upstream MFA from a trusted provider lowers the risk", () => {
  let testApp: TestApp;
  let api: ReturnType<typeof restClient>;
  let signer: Awaited<ReturnType<typeof createTokenSigner>>;

  beforeAll(async () => {
    signer = await createTokenSigner();
    const provider = (issuer: string, trust: boolean) => ({
      issuer,
      client_ids: ["app"],
      jwks_uri: `${issuer}/jwks`,
      trust_upstream_mfa: trust,
    });
    testApp = await startTestApp({
      config: {
        dev: true,
        providers: {
          trusted: provider("https://trusted.example", true),
          untrusted: provider("https://untrusted.example", false),
        },
      },
      overrides: {
        fetch: (async () =>
          new Response(JSON.stringify({ keys: [signer.publicJwk] }), {
            headers: { "content-type": "application/json" },
          })) as typeof fetch,
      },
    });
    api = restClient(testApp.url);
  });
  afterAll(async () => {
    await testApp?.close();
  });

  for (const [provider, expected] of [
    ["trusted", "tokens"],
    ["untrusted", "challenge"],
  ] as const) {
    it(`${provider} provider, ID token with amr ["pwd","mfa"], new device: ${expected}`, async () => {
      const sub = uniqueSub(provider);
      const issuer = `https://${provider}.example`;
      const token = (amr?: string[]) =>
        signer.sign({ iss: issuer, aud: "app", sub, ...(amr === undefined ? {} : { amr }) });
      const first = await api.signin(await token(), { provider, device: `${sub}-A` });
      expect(first.status).toBe(200);
      const access = first.body["access_token"] as string;
      const secret = (await api.authed("POST", "/auth/mfa/totp/enroll", access)).body["secret"] as string;
      expect(
        (await api.authed("POST", "/auth/mfa/totp/confirm", access, { code: totpCode(secret, new Date()) })).status,
      ).toBe(200);

      const second = await token(["pwd", "mfa"]);
      const res = await api.signin(second, { provider, device: `${sub}-B` });
      expect(res.status).toBe(200);
      if (expected === "tokens") {
        expect(res.body).toMatchObject({
          requires_mfa: false,
          risk_level: "low",
          risk_assessment: { score: 0, require_mfa: false, signals: ["new_device", "upstream_mfa"] },
        });
        // The upstream methods are carried into the local token.
        expect(decodeJwt(res.body["access_token"] as string)["amr"]).toEqual(["fed", "pwd", "mfa"]);
        const audit = await testApp.app.database.client.auditEvent.findFirstOrThrow({
          where: { type: "signin.succeeded", subject: sub },
          orderBy: { at: "desc" },
        });
        expect(JSON.parse(audit.detail!).risk.signals).toEqual([
          { code: "new_device", weight: 30 },
          { code: "upstream_mfa", weight: -40 },
        ]);
      } else {
        expectChallenge(res, "new_device");
        expect(res.body["risk_assessment"]).toMatchObject({ score: 30 });
        // The challenge was this token's use: replayed, it gets no second challenge.
        const replay = await api.signin(second, { provider, device: `${sub}-C` });
        expect(replay).toMatchObject({ status: 401, body: { code: "id_token_replayed" } });
        const { userId } = await testApp.app.database.client.identity.findFirstOrThrow({ where: { subject: sub } });
        expect(await testApp.app.database.client.mfaChallenge.count({ where: { userId } })).toBe(1);
      }
    });
  }
});
