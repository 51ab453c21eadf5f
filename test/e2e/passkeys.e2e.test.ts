/**
 * Passkeys end to end against a real server on port 0, driven by a software authenticator in
 * Node (ES256 and EdDSA): registration, list, rename, a risky sign-in answered with the passkey
 * and removal, over REST, Connect and gRPC; then every bad input, each with its
 * stable code and nothing written. On SQLite and, with TEST_DATABASE_URL, PostgreSQL. ID tokens
 * come from the built-in dev issuer (dev mode).
 */
import { type JsonObject } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";
import { AuthService } from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { MfaService } from "../../gen/pb/identity/v1/mfa_service_pb.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { testDatabaseKinds } from "../support/databases.ts";
import { createMovableClock, devIdToken, uniqueSub } from "../support/signin-e2e.ts";
import { type CoseAlg, createSoftAuthenticator, type SoftAuthenticator } from "../support/soft-authenticator.ts";

const RP_ID = "identity.test";
const ORIGIN = "https://identity.test";

interface Outcome {
  /** The stable error code, or null on success. */
  code: string | null;
  /** HTTP status (REST) or Connect code name (Connect, gRPC). */
  status: string;
  body: Record<string, unknown>;
}

/** The passkey calls over one protocol; answers in snake_case JSON either way. */
interface PasskeyApi {
  beginRegistration(access: string): Promise<Outcome>;
  finishRegistration(access: string, credential: unknown, name?: string): Promise<Outcome>;
  list(access: string): Promise<Outcome>;
  rename(access: string, id: string, name: string): Promise<Outcome>;
  remove(access: string, id: string): Promise<Outcome>;
  beginMfa(challengeToken: string, device: string): Promise<Outcome>;
  verify(challengeToken: string, assertion: unknown, device: string): Promise<Outcome>;
  beginStepUp(access: string): Promise<Outcome>;
  stepUp(access: string, assertion: unknown): Promise<Outcome>;
  enrollTotp(access: string): Promise<Outcome>;
}

function restApi(url: string): PasskeyApi {
  async function call(method: string, path: string, body: unknown, headers: Record<string, string>): Promise<Outcome> {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
      ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    const json = text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
    return { code: res.ok ? null : (json["code"] as string), status: String(res.status), body: json };
  }
  const bearer = (access: string) => ({ authorization: `Bearer ${access}` });
  return {
    beginRegistration: (a) => call("POST", "/auth/mfa/passkeys/registration/begin", {}, bearer(a)),
    finishRegistration: (a, credential, name) =>
      call(
        "POST",
        "/auth/mfa/passkeys/registration/finish",
        { credential, ...(name === undefined ? {} : { name }) },
        bearer(a),
      ),
    list: (a) => call("GET", "/auth/mfa/passkeys", undefined, bearer(a)),
    rename: (a, id, name) => call("PATCH", `/auth/mfa/passkeys/${id}`, { name }, bearer(a)),
    remove: (a, id) => call("DELETE", `/auth/mfa/passkeys/${id}`, undefined, bearer(a)),
    beginMfa: (chg, device) =>
      call("POST", "/auth/mfa/webauthn/begin", { challenge_token: chg }, { "x-device-id": device }),
    verify: (chg, assertion, device) =>
      call(
        "POST",
        "/auth/mfa/verify",
        { challenge_token: chg, method: "webauthn", webauthn_assertion: assertion },
        { "x-device-id": device },
      ),
    beginStepUp: (a) => call("POST", "/auth/mfa/step-up/webauthn/begin", {}, bearer(a)),
    stepUp: (a, assertion) =>
      call("POST", "/auth/mfa/step-up", { method: "webauthn", webauthn_assertion: assertion }, bearer(a)),
    enrollTotp: (a) => call("POST", "/auth/mfa/totp/enroll", {}, bearer(a)),
  };
}

/** Connect or gRPC through connect-node clients; messages become snake_case JSON like REST's. */
function clientApi(transport: ReturnType<typeof createConnectTransport>): PasskeyApi {
  const auth = createClient(AuthService, transport);
  const mfa = createClient(MfaService, transport);
  const bearer = (access: string) => ({ headers: { authorization: `Bearer ${access}` } });
  async function run(call: () => Promise<unknown>): Promise<Outcome> {
    try {
      const message = (await call()) as Record<string, unknown>;
      return { code: null, status: "ok", body: snake(message) as Record<string, unknown> };
    } catch (e) {
      const err = ConnectError.from(e);
      const info = err.findDetails(ErrorInfoSchema)[0];
      return {
        code: info?.reason ?? `connect:${Code[err.code]}`,
        status: Code[err.code]!,
        body: { details: { ...info?.metadata } },
      };
    }
  }
  return {
    beginRegistration: (a) => run(() => mfa.beginPasskeyRegistration({}, bearer(a))),
    finishRegistration: (a, credential, name) =>
      run(() =>
        mfa.finishPasskeyRegistration(
          { credential: credential as JsonObject, ...(name === undefined ? {} : { name }) },
          bearer(a),
        ),
      ),
    list: (a) => run(() => mfa.listPasskeys({}, bearer(a))),
    rename: (a, id, name) => run(() => mfa.renamePasskey({ id, name }, bearer(a))),
    remove: (a, id) => run(() => mfa.removePasskey({ id }, bearer(a))),
    beginMfa: (chg, device) =>
      run(() => auth.beginWebauthnMfa({ challengeToken: chg }, { headers: { "x-device-id": device } })),
    verify: (chg, assertion, device) =>
      run(() =>
        auth.verifyMfa(
          { challengeToken: chg, method: "webauthn", webauthnAssertion: assertion as JsonObject },
          { headers: { "x-device-id": device } },
        ),
      ),
    beginStepUp: (a) => run(() => mfa.beginStepUp({}, bearer(a))),
    stepUp: (a, assertion) =>
      run(() => mfa.stepUp({ method: "webauthn", webauthnAssertion: assertion as JsonObject }, bearer(a))),
    enrollTotp: (a) => run(() => mfa.enrollTotp({}, bearer(a))),
  };
}

/** camelCase message fields → snake_case (Struct values, the options, are kept as they are). */
function snake(value: unknown, keep = false): unknown {
  if (Array.isArray(value)) return value.map((v) => snake(v, keep));
  if (value instanceof Date || typeof value !== "object" || value === null) return value;
  if ("$typeName" in value && (value as { $typeName: string }).$typeName === "google.protobuf.Timestamp") return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (k === "$typeName") continue;
    const key = keep ? k : k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    out[key] = snake(v, keep || key === "options");
  }
  return out;
}

for (const kind of testDatabaseKinds())
  describe(`passkeys on ${kind.dialect}`, kind.suiteOptions, () => {
    let testApp: TestApp;
    const clock = createMovableClock();
    const h2: Http2SessionManager[] = [];
    let apis: Record<"rest" | "connect" | "grpc", PasskeyApi>;

    beforeAll(async () => {
      testApp = await startTestApp({
        config: {
          dev: true,
          "webauthn.rp_id": RP_ID,
          "webauthn.origins": [ORIGIN],
          "webauthn.rp_name": "Identity tests",
        },
        kind,
        overrides: { clock },
      });
      const session = new Http2SessionManager(testApp.url);
      h2.push(session);
      apis = {
        rest: restApi(testApp.url),
        connect: clientApi(createConnectTransport({ baseUrl: testApp.url, httpVersion: "1.1" })),
        grpc: clientApi(createGrpcTransport({ baseUrl: testApp.url, sessionManager: session })),
      };
    });
    afterAll(async () => {
      for (const s of h2) s.abort();
      await testApp?.close();
    });

    const db = () => testApp.app.database.client;

    async function signin(sub: string, device: string) {
      const idToken = await devIdToken(testApp.url, sub, { email: `${sub}@example.com` });
      const res = await fetch(`${testApp.url}/auth/id-token/signin`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-device-id": device, "user-agent": "passkeys-e2e/1.0" },
        body: JSON.stringify({ id_token: idToken, provider: "dev" }),
      });
      expect(res.status).toBe(200);
      return (await res.json()) as Record<string, unknown>;
    }

    /** A first sign-in (no MFA: a new account) and its access token. */
    async function newUser(label: string) {
      const sub = uniqueSub(label);
      const first = await signin(sub, `${sub}-A`);
      expect(first["requires_mfa"]).toBe(false);
      return { sub, access: first["access_token"] as string, userId: (first["user"] as { id: string }).id };
    }

    async function register(api: PasskeyApi, access: string, authenticator: SoftAuthenticator, name?: string) {
      const begun = await api.beginRegistration(access);
      expect(begun.code).toBeNull();
      const finished = await api.finishRegistration(
        access,
        authenticator.create(begun.body["options"] as Record<string, unknown>),
        name,
      );
      expect(finished.code).toBeNull();
      return (finished.body["passkey"] as Record<string, unknown>)["id"] as string;
    }

    /** StepUp with a passkey on the session of `access`: its new access token. */
    async function stepUp(api: PasskeyApi, access: string, authenticator: SoftAuthenticator) {
      const begun = await api.beginStepUp(access);
      expect(begun.code).toBeNull();
      const done = await api.stepUp(access, authenticator.get(begun.body["options"] as Record<string, unknown>));
      expect(done.code).toBeNull();
      return done.body["access_token"] as string;
    }

    /** A sign-in from a new device: a challenge the passkey can answer. */
    async function riskySignin(sub: string, device = `${sub}-B-${Math.random()}`) {
      const res = await signin(sub, device);
      expect(res["requires_mfa"]).toBe(true);
      expect(res["required_mfa_methods"]).toContain("webauthn");
      return { chg: res["challenge_token"] as string, device };
    }

    const counts = async (userId: string) => ({
      passkeys: await db().webauthnCredential.count({ where: { userId } }),
      sessions: await db().session.count({ where: { userId } }),
      spent: await db().webauthnCeremony.count({ where: { userId, consumedAt: { not: null } } }),
      counters: (
        await db().webauthnCredential.findMany({ where: { userId }, select: { signCount: true, lastUsedAt: true } })
      ).map((c) => [c.signCount, c.lastUsedAt?.getTime() ?? null]),
    });

    for (const protocol of ["rest", "connect", "grpc"] as const) {
      for (const alg of ["ES256", "EdDSA"] as CoseAlg[]) {
        it(`${protocol}, ${alg}: register, list, rename, answer a risky sign-in, remove`, async () => {
          const api = apis[protocol];
          const { sub, access, userId } = await newUser(`pk-${protocol}-${alg}`);
          const authenticator = createSoftAuthenticator({ origin: ORIGIN, alg });

          const begun = await api.beginRegistration(access);
          expect(begun.code).toBeNull();
          const options = begun.body["options"] as Record<string, unknown>;
          expect(options).toMatchObject({
            rp: { id: RP_ID, name: "Identity tests" },
            attestation: "none",
            authenticatorSelection: {
              residentKey: "required",
              requireResidentKey: true,
              userVerification: "preferred",
            },
            excludeCredentials: [],
          });
          expect((options["pubKeyCredParams"] as { alg: number }[]).map((p) => p.alg)).toEqual([-8, -7, -257]);
          expect(Buffer.from((options["user"] as { id: string }).id, "base64url").toString()).toBe(userId);

          const finished = await api.finishRegistration(access, authenticator.create(options), "Laptop");
          expect(finished.code).toBeNull();
          const passkey = finished.body["passkey"] as Record<string, unknown>;
          expect(passkey).toMatchObject({
            name: "Laptop",
            authenticator_type: "multi_device",
            backed_up: true,
            flagged: false,
            aaguid: "00000000-0000-0000-0000-000000000000",
          });
          expect(passkey["transports"]).toEqual(["internal", "hybrid"]);
          const id = passkey["id"] as string;
          expect(id).toMatch(/^pk_/);

          // A factor now: another change needs the passkey on this session (one step-up
          // rule for every factor change); the refusal names the passkey way. Renaming is free.
          for (const refused of [
            await api.beginRegistration(access),
            await api.remove(access, id),
            await api.enrollTotp(access),
          ]) {
            expect(refused.code).toBe("reauthentication_required");
            expect(refused.body["details"]).toMatchObject({
              step_up: "MfaService.StepUp",
              step_up_methods: "webauthn",
              step_up_begin: "MfaService.BeginStepUp",
              step_up_begin_route: "POST /auth/mfa/step-up/webauthn/begin",
            });
          }
          expect((await api.rename(access, id, "Work laptop")).code).toBeNull();
          const stepped = await stepUp(api, access, authenticator);
          expect(decodeJwt(stepped)).toMatchObject({
            sid: decodeJwt(access)["sid"],
            auth_time: decodeJwt(access)["auth_time"],
          });
          expect(decodeJwt(stepped)["amr"]).toEqual(expect.arrayContaining(["pop", "mfa"]));
          expect(await db().auditEvent.count({ where: { userId, type: "mfa.step_up" } })).toBe(1);

          // A second registration excludes the first credential.
          const again = await api.beginRegistration(stepped);
          expect(
            (again.body["options"] as { excludeCredentials: { id: string }[] }).excludeCredentials.map((c) => c.id),
          ).toEqual([authenticator.credentials[0]!.id.toString("base64url")]);

          const listed = await api.list(access);
          // The step-up used it.
          expect(
            (listed.body["passkeys"] as Record<string, unknown>[]).map((p) => [
              p["id"],
              p["name"],
              p["last_used_at"] !== undefined,
            ]),
          ).toEqual([[id, "Work laptop", true]]);

          // A risky sign-in (new device), answered with the passkey: the same success as a TOTP code.
          const { chg, device } = await riskySignin(sub);
          const request = await api.beginMfa(chg, device);
          expect(request.code).toBeNull();
          const requestOptions = request.body["options"] as Record<string, unknown>;
          expect(requestOptions).toMatchObject({ rpId: RP_ID, userVerification: "preferred" });
          expect((requestOptions["allowCredentials"] as { id: string }[]).map((c) => c.id)).toEqual([
            authenticator.credentials[0]!.id.toString("base64url"),
          ]);
          const login = await api.verify(chg, authenticator.get(requestOptions), device);
          expect(login.code).toBeNull();
          expect(login.body["requires_mfa"]).toBe(false);
          expect(login.body["refresh_token"]).toMatch(/^rt_/);
          expect(decodeJwt(login.body["access_token"] as string)["amr"]).toEqual(
            expect.arrayContaining(["pop", "mfa"]),
          );
          const used = (await api.list(access)).body["passkeys"] as Record<string, unknown>[];
          expect(used[0]!["last_used_at"]).toBeDefined();
          expect((await db().webauthnCredential.findUniqueOrThrow({ where: { id } })).signCount).toBe(2);
          const audit = await db().auditEvent.findFirstOrThrow({
            where: { userId, type: "signin.succeeded" },
            orderBy: { at: "desc" },
          });
          expect(JSON.parse(audit.detail!)).toMatchObject({ mfa: { method: "webauthn", passkey_id: id } });

          // Removal of the last factor: allowed on the session the passkey just opened (VerifyMfa
          // stamps its second factor), so the next risky sign-in has nothing to challenge with.
          const fresh = login.body["access_token"] as string;
          expect((await api.remove(fresh, id)).code).toBeNull();
          expect((await api.list(access)).body["passkeys"] ?? []).toEqual([]);
          expect((await api.remove(fresh, id)).code).toBe("webauthn_credential_not_found");
          const after = await signin(sub, `${sub}-C`);
          expect(after["required_mfa_methods"] ?? []).toEqual([]);
          expect(after["mfa_check_reason"]).toBe("mfa_enrollment_required");
        });
      }
    }

    describe("step-up with a passkey (one rule for every factor change)", () => {
      for (const protocol of ["rest", "connect"] as const) {
        it(`${protocol}: a passkey answer in VerifyMfa allows factor changes at once, for mfa.step_up_max_age only`, async () => {
          const api = apis[protocol];
          const { sub, access, userId } = await newUser(`pk-su-verify-${protocol}`);
          const a = createSoftAuthenticator({ origin: ORIGIN });
          await register(api, access, a);
          const { chg, device } = await riskySignin(sub);
          const begun = await api.beginMfa(chg, device);
          const login = await api.verify(chg, a.get(begun.body["options"] as Record<string, unknown>), device);
          expect(login.code).toBeNull();
          const fresh = login.body["access_token"] as string;
          expect((await api.enrollTotp(fresh)).code).toBeNull();
          await register(api, fresh, createSoftAuthenticator({ origin: ORIGIN }));
          expect(await db().webauthnCredential.count({ where: { userId } })).toBe(2);

          // Later than the max age (600 s): refused, naming both ways this user now has.
          clock.advance(601_000);
          const ids = ((await api.list(fresh)).body["passkeys"] as { id: string }[]).map((p) => p.id);
          for (const refused of [
            await api.beginRegistration(fresh),
            await api.remove(fresh, ids[0]!),
            await api.enrollTotp(fresh),
          ]) {
            expect(refused.code).toBe("reauthentication_required");
            expect(refused.body["details"]).toMatchObject({
              step_up_begin: "MfaService.BeginStepUp",
              max_age_seconds: "600",
            });
          }
          expect(await db().webauthnCredential.count({ where: { userId } })).toBe(2);
        });
      }

      it("a step-up ceremony is single-use, bound to its session, and refused answers count against the code budget", async () => {
        const api = apis.rest;
        const { sub, access, userId } = await newUser("pk-su-bound");
        const a = createSoftAuthenticator({ origin: ORIGIN });
        await register(api, access, a);
        // A second session of the same user (same device: no challenge).
        const other = (await signin(sub, `${sub}-A`))["access_token"] as string;
        expect(decodeJwt(other)["sid"]).not.toBe(decodeJwt(access)["sid"]);

        const options = (await api.beginStepUp(access)).body["options"] as Record<string, unknown>;
        expect(options).toMatchObject({ rpId: RP_ID });
        const answer = a.get(options);
        // Answered on another session: refused, that session not stepped up, the ceremony unspent.
        const stolen = await api.stepUp(other, answer);
        expect([stolen.code, stolen.status]).toEqual(["webauthn_challenge_invalid", "400"]);
        expect(
          (await db().session.findUniqueOrThrow({ where: { id: decodeJwt(other)["sid"] as string } })).mfaAt,
        ).toBeNull();
        // Counted like a wrong code, under its own code.
        expect(
          await db().auditEvent.count({
            where: { userId, type: "mfa.code_failed", code: "webauthn_challenge_invalid" },
          }),
        ).toBe(1);
        // On its own session: accepted once; the replay is refused.
        const ok = await api.stepUp(access, answer);
        expect(ok.code).toBeNull();
        const replay = await api.stepUp(access, answer);
        expect(replay.code).toBe("webauthn_challenge_invalid");
        // A registration ceremony is no step-up ceremony.
        const reg = (await api.beginRegistration(ok.body["access_token"] as string)).body["options"] as Record<
          string,
          unknown
        >;
        expect((await api.stepUp(access, a.get({ ...reg, rpId: RP_ID, allowCredentials: [] }))).code).toBe(
          "webauthn_challenge_invalid",
        );
        expect(await db().auditEvent.count({ where: { userId, type: "mfa.step_up" } })).toBe(1);

        // Malformed: refused before anything is counted.
        expect((await api.stepUp(access, { id: 42 })).code).toBe("webauthn_response_malformed");
        expect((await api.stepUp(access, undefined)).code).toBe("mfa_code_required");
      });

      it("BeginStepUp needs a usable passkey; StepUp with a code on a passkey-only account names the passkey way", async () => {
        const api = apis.connect;
        const { access } = await newUser("pk-su-none");
        const none = await api.beginStepUp(access);
        expect(none.code).toBe("mfa_method_not_available");
        const a = createSoftAuthenticator({ origin: ORIGIN });
        await register(api, access, a);
        const res = await fetch(`${testApp.url}/auth/mfa/step-up`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${access}` },
          body: JSON.stringify({ method: "totp", code: "123456" }),
        });
        const body = (await res.json()) as { code: string; message: string };
        expect(body.code).toBe("totp_not_enrolled");
        expect(body.message).toContain("BeginStepUp");
      });
    });

    describe("bad registration input: a stable code, nothing written", () => {
      const cases: [string, string, (options: Record<string, unknown>, a: SoftAuthenticator) => unknown][] = [
        ["wrong origin", "webauthn_origin_mismatch", (o, a) => a.create(o, { origin: "https://evil.example" })],
        ["wrong RP ID hash", "webauthn_rp_id_mismatch", (o, a) => a.create(o, { rpId: "evil.example" })],
        [
          "unknown challenge",
          "webauthn_challenge_invalid",
          (o, a) => a.create(o, { challenge: Buffer.alloc(32, 1).toString("base64url") }),
        ],
        ["wrong ceremony type", "webauthn_verification_failed", (o, a) => a.create(o, { type: "webauthn.get" })],
        [
          "malformed base64url",
          "webauthn_response_malformed",
          (o, a) => {
            const r = a.create(o);
            return { ...r, response: { ...r.response, attestationObject: "not*base64url" } };
          },
        ],
        [
          "malformed CBOR",
          "webauthn_response_malformed",
          (o, a) => {
            const r = a.create(o);
            return {
              ...r,
              response: { ...r.response, attestationObject: Buffer.from([0xbf, 0xff, 0x1c]).toString("base64url") },
            };
          },
        ],
        [
          "oversized",
          "webauthn_response_malformed",
          (o, a) => {
            const r = a.create(o);
            return { ...r, clientExtensionResults: { padding: "x".repeat(20_000) } };
          },
        ],
        ["not a response at all", "webauthn_response_malformed", () => ({ id: 42 })],
      ];
      for (const [label, code, make] of cases) {
        for (const protocol of ["rest", "grpc"] as const) {
          it(`${label} (${protocol}) → ${code}`, async () => {
            const api = apis[protocol];
            const { access, userId } = await newUser("pk-bad-reg");
            const begun = await api.beginRegistration(access);
            const before = await counts(userId);
            const out = await api.finishRegistration(
              access,
              make(begun.body["options"] as Record<string, unknown>, createSoftAuthenticator({ origin: ORIGIN })),
            );
            expect(out.code).toBe(code);
            expect(await counts(userId)).toEqual(before);
          });
        }
      }

      it("a replayed, an expired and another user's registration challenge → webauthn_challenge_invalid", async () => {
        const api = apis.rest;
        const a = createSoftAuthenticator({ origin: ORIGIN });
        const { access, userId } = await newUser("pk-reg-replay");
        const options = (await api.beginRegistration(access)).body["options"] as Record<string, unknown>;
        const response = a.create(options);
        expect((await api.finishRegistration(access, response)).code).toBeNull();
        const stepped = await stepUp(api, access, a);
        const before = await counts(userId);
        expect((await api.finishRegistration(stepped, a.create(options))).code).toBe("webauthn_challenge_invalid");

        const expiring = (await api.beginRegistration(stepped)).body["options"] as Record<string, unknown>;
        clock.advance(301_000);
        const late = await api.finishRegistration(stepped, a.create(expiring));
        expect([late.code, late.status]).toEqual(["webauthn_challenge_invalid", "400"]);

        const other = await newUser("pk-reg-other");
        const theirs = (await api.beginRegistration(other.access)).body["options"] as Record<string, unknown>;
        expect((await api.finishRegistration(stepped, a.create(theirs))).code).toBe("webauthn_challenge_invalid");
        expect(await counts(userId)).toEqual(before);
        expect(await db().webauthnCredential.count({ where: { userId: other.userId } })).toBe(0);
      });

      it("the same credential twice → webauthn_credential_exists (the browser would have excluded it); the ceremony stays unspent", async () => {
        const api = apis.rest;
        const { access, userId } = await newUser("pk-reg-twice");
        const a = createSoftAuthenticator({ origin: ORIGIN });
        await register(api, access, a);
        const stepped = await stepUp(api, access, a);
        const options = (await api.beginRegistration(stepped)).body["options"] as Record<string, unknown>;
        const before = await counts(userId);
        expect((await api.finishRegistration(stepped, a.create(options, {}, a.credentials[0]))).code).toBe(
          "webauthn_credential_exists",
        );
        expect(await counts(userId)).toEqual(before);
        expect((await api.finishRegistration(stepped, a.create(options))).code).toBeNull();
      });
    });

    describe("bad assertions: a stable code, no session, the counter unmoved", () => {
      async function enrolled(label: string, options: { keepsCounter?: boolean } = {}) {
        const user = await newUser(label);
        const authenticator = createSoftAuthenticator({ origin: ORIGIN, ...options });
        await register(apis.rest, user.access, authenticator);
        return { ...user, authenticator };
      }

      const cases: [string, string, (request: Record<string, unknown>, a: SoftAuthenticator) => unknown][] = [
        [
          "wrong origin",
          "webauthn_origin_mismatch",
          (r, a) => a.get(r, { origin: "https://evil.example", signCount: 5 }),
        ],
        ["wrong RP ID hash", "webauthn_rp_id_mismatch", (r, a) => a.get(r, { rpId: "evil.example", signCount: 5 })],
        [
          "unknown ceremony challenge",
          "webauthn_challenge_invalid",
          (r, a) => a.get(r, { challenge: Buffer.alloc(32, 2).toString("base64url"), signCount: 5 }),
        ],
        [
          "a bad signature",
          "webauthn_verification_failed",
          (r, a) => {
            const out = a.get(r, { signCount: 5 });
            return { ...out, response: { ...out.response, signature: Buffer.alloc(70, 1).toString("base64url") } };
          },
        ],
        [
          "malformed base64url",
          "webauthn_response_malformed",
          (r, a) => {
            const out = a.get(r, { signCount: 5 });
            return { ...out, response: { ...out.response, authenticatorData: "%%%" } };
          },
        ],
        [
          "oversized",
          "webauthn_response_malformed",
          (r, a) => ({ ...a.get(r, { signCount: 5 }), clientExtensionResults: { padding: "x".repeat(20_000) } }),
        ],
      ];
      for (const [label, code, make] of cases) {
        for (const protocol of ["rest", "connect", "grpc"] as const) {
          it(`${label} (${protocol}) → ${code}`, async () => {
            const api = apis[protocol];
            const { sub, userId, authenticator } = await enrolled("pk-bad-get");
            const { chg, device } = await riskySignin(sub);
            const request = (await api.beginMfa(chg, device)).body["options"] as Record<string, unknown>;
            const before = await counts(userId);
            const out = await api.verify(chg, make(request, authenticator), device);
            expect(out.code).toBe(code);
            expect(await counts(userId)).toEqual(before);
            // The challenge still stands: the right answer completes it.
            const good = await api.verify(chg, authenticator.get(request, { signCount: 6 }), device);
            expect(good.code).toBeNull();
          });
        }
      }

      it("a replayed assertion and an expired ceremony → webauthn_challenge_invalid", async () => {
        const api = apis.rest;
        const { sub, userId, authenticator } = await enrolled("pk-get-replay");
        const first = await riskySignin(sub);
        const request = (await api.beginMfa(first.chg, first.device)).body["options"] as Record<string, unknown>;
        const assertion = authenticator.get(request);
        expect((await api.verify(first.chg, assertion, first.device)).code).toBeNull();

        // The same ceremony answered again, for a new sign-in: the ceremony was spent.
        const second = await riskySignin(sub);
        await api.beginMfa(second.chg, second.device);
        const before = await counts(userId);
        expect((await api.verify(second.chg, authenticator.get(request), second.device)).code).toBe(
          "webauthn_challenge_invalid",
        );

        // A ceremony past its life (the MFA challenge lives as long, so it expires too).
        const stale = (await api.beginMfa(second.chg, second.device)).body["options"] as Record<string, unknown>;
        clock.advance(301_000);
        const late = await api.verify(second.chg, authenticator.get(stale), second.device);
        expect(late.code).toBe("challenge_expired");
        expect(await counts(userId)).toEqual(before);
      });

      it("a ceremony opened for another sign-in of the same user → webauthn_challenge_invalid", async () => {
        const api = apis.rest;
        const { sub, authenticator } = await enrolled("pk-get-cross");
        const one = await riskySignin(sub);
        const two = await riskySignin(sub, one.device);
        const forOne = (await api.beginMfa(one.chg, one.device)).body["options"] as Record<string, unknown>;
        expect((await api.verify(two.chg, authenticator.get(forOne), two.device)).code).toBe(
          "webauthn_challenge_invalid",
        );
      });

      it("another user's credential → webauthn_credential_unknown", async () => {
        const api = apis.rest;
        const victim = await enrolled("pk-get-victim");
        const attacker = await enrolled("pk-get-attacker");
        const { chg, device } = await riskySignin(victim.sub);
        const request = (await api.beginMfa(chg, device)).body["options"] as Record<string, unknown>;
        const before = await counts(victim.userId);
        const out = await api.verify(chg, attacker.authenticator.get(request), device);
        expect(out.code).toBe("webauthn_credential_unknown");
        expect(await counts(victim.userId)).toEqual(before);
      });

      it("a counter that goes backwards: refused, the credential flagged and audited, refused from then on", async () => {
        const api = apis.rest;
        const { sub, userId, access, authenticator } = await enrolled("pk-get-clone");
        const first = await riskySignin(sub);
        let request = (await api.beginMfa(first.chg, first.device)).body["options"] as Record<string, unknown>;
        expect(
          (await api.verify(first.chg, authenticator.get(request, { signCount: 10 }), first.device)).code,
        ).toBeNull();

        const second = await riskySignin(sub);
        request = (await api.beginMfa(second.chg, second.device)).body["options"] as Record<string, unknown>;
        const sessions = await db().session.count({ where: { userId } });
        const out = await api.verify(second.chg, authenticator.get(request, { signCount: 7 }), second.device);
        expect(out.code).toBe("webauthn_counter_regressed");
        expect(await db().session.count({ where: { userId } })).toBe(sessions);
        const row = await db().webauthnCredential.findFirstOrThrow({ where: { userId } });
        expect(row.signCount).toBe(10);
        expect(row.flaggedAt).not.toBeNull();
        const audit = await db().auditEvent.findFirstOrThrow({ where: { userId, type: "mfa.passkey_flagged" } });
        expect(audit.code).toBe("webauthn_counter_regressed");
        expect(((await api.list(access)).body["passkeys"] as { flagged: boolean }[])[0]!.flagged).toBe(true);

        // Even a forward counter is refused now, and the flagged passkey is no method any more.
        const retry = await api.verify(second.chg, authenticator.get(request, { signCount: 11 }), second.device);
        expect(retry.code).toBe("webauthn_counter_regressed");
        const third = await signin(sub, `${sub}-D`);
        expect(third["required_mfa_methods"] ?? []).not.toContain("webauthn");
      });

      it("an authenticator that keeps no counter (0 each time) is accepted every time", async () => {
        const api = apis.rest;
        const { sub, authenticator } = await enrolled("pk-get-zero", { keepsCounter: false });
        for (let i = 0; i < 2; i++) {
          const { chg, device } = await riskySignin(sub);
          const request = (await api.beginMfa(chg, device)).body["options"] as Record<string, unknown>;
          expect((await api.verify(chg, authenticator.get(request), device)).code).toBeNull();
        }
      });

      it("BeginWebauthnMfa opens at most 10 ceremonies per challenge (challenge_exhausted after), and the answer still counts", async () => {
        const api = apis.rest;
        const { sub, userId, authenticator } = await enrolled("pk-begin-cap");
        const { chg, device } = await riskySignin(sub);
        let last: Record<string, unknown> = {};
        for (let i = 0; i < 10; i++) {
          const begun = await api.beginMfa(chg, device);
          expect(begun.code).toBeNull();
          last = begun.body["options"] as Record<string, unknown>;
        }
        const ceremonies = await db().webauthnCeremony.count({ where: { userId, purpose: "authentication" } });
        expect((await api.beginMfa(chg, device)).code).toBe("challenge_exhausted");
        expect(await db().webauthnCeremony.count({ where: { userId, purpose: "authentication" } })).toBe(ceremonies);
        expect((await api.verify(chg, authenticator.get(last), device)).code).toBeNull();
      });

      it("metrics count registrations and passkey answers by outcome; refused registrations are audited with their code", async () => {
        const text = await (await fetch(`${testApp.url}/metrics`)).text();
        const value = (series: string) =>
          Number(new RegExp(`^${series.replace(/[{}]/g, "\\$&")} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
        expect(value('identity_passkey_registrations_total{outcome="success"}')).toBeGreaterThan(0);
        expect(value('identity_passkey_registrations_total{outcome="webauthn_origin_mismatch"}')).toBeGreaterThan(0);
        expect(value('identity_mfa_verifications_total{method="webauthn",outcome="success"}')).toBeGreaterThan(0);
        expect(
          value('identity_mfa_verifications_total{method="webauthn",outcome="webauthn_counter_regressed"}'),
        ).toBeGreaterThan(0);
        const refused = await db().auditEvent.findFirstOrThrow({
          where: { type: "mfa.passkey_refused", code: "webauthn_rp_id_mismatch" },
        });
        expect(JSON.parse(refused.detail!)).toEqual({ action: "register" });
      });

      it("VerifyMfa without an assertion → mfa_code_required; BeginWebauthnMfa with a bad token or from another device → challenge_invalid", async () => {
        const api = apis.rest;
        const { sub } = await enrolled("pk-begin");
        const { chg, device } = await riskySignin(sub);
        expect((await api.verify(chg, undefined, device)).code).toBe("mfa_code_required");
        expect((await api.beginMfa("chg_nope", device)).code).toBe("challenge_invalid");
        expect((await api.beginMfa(chg, "another-device")).code).toBe("challenge_invalid");
      });
    });
  });
