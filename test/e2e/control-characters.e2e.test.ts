import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";
import { AuthService } from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { mintAdminKey } from "../../src/tokens/admin-keys.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { testDatabaseKinds } from "../support/databases.ts";
import { countRows } from "../support/schema-introspection.ts";
import {
  auditRowsOf,
  createTokenSigner,
  grpcSignin,
  grpcTarget,
  metadataToHeaders,
  newRequestId,
  uniqueSub,
} from "../support/signin-e2e.ts";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";

/**
 * Regression: NUL and other control characters in e-mail, phone, names, reasons and
 * path parameters gave 500 on PostgreSQL and lost the audit row. Request fields are refused
 * before any handler (400 `invalid_characters`, nothing written); ID-token claims refuse the
 * token (401 `id_token_claim_invalid`, the sign-in's audit row written, nothing else).
 */
const ADMIN = mintAdminKey();
const ISSUER = "https://idp.example";

for (const kind of testDatabaseKinds()) {
  describe(`control characters on ${kind.dialect}`, kind.suiteOptions, () => {
    let t: TestApp;
    let signer: Awaited<ReturnType<typeof createTokenSigner>>;
    let access: string;
    let userId: string;

    beforeAll(async () => {
      signer = await createTokenSigner();
      t = await startTestApp({
        kind,
        config: {
          dev: true,
          admin: { api_keys: [{ name: "ops", sha256: ADMIN.sha256Hex }] },
          providers: { idp: { issuer: ISSUER, client_ids: ["app"], jwks_uri: `${ISSUER}/jwks` } },
        },
        overrides: {
          fetch: (async () =>
            new Response(JSON.stringify({ keys: [signer.publicJwk] }), {
              headers: { "content-type": "application/json" },
            })) as typeof fetch,
        },
      });
      const first = await call("POST", "/auth/id-token/signin", {
        id_token: await signer.sign({ iss: ISSUER, aud: "app", sub: uniqueSub("ok") }),
        provider: "idp",
      });
      expect(first.status).toBe(200);
      access = first.body["access_token"] as string;
      userId = first.body["user_id"] as string;
    });
    afterAll(async () => {
      await t?.close();
    });

    async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
      const res = await fetch(`${t.url}${path}`, {
        method,
        headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, body: (text === "" ? {} : JSON.parse(text)) as Record<string, unknown> };
    }

    /** Runs `send`; expects the refusal, and that only `audited` audit rows (for this request id) were written. */
    async function expectRefused(
      send: (requestId: string) => Promise<{ status: number; body: Record<string, unknown> }>,
      expected: { status: number; code: string; details: Record<string, string>; audited: number },
    ) {
      const before = await countRows(t.database.url);
      const requestId = newRequestId();
      const res = await send(requestId);
      expect(res).toEqual({
        status: expected.status,
        body: expect.objectContaining({ code: expected.code, details: expected.details }),
      });
      const after = await countRows(t.database.url);
      expect(after).toEqual({ ...before, audit_events: before["audit_events"]! + expected.audited });
      const audits = await auditRowsOf(t.app, requestId);
      expect(audits).toHaveLength(expected.audited);
      for (const a of audits) expect(a).toMatchObject({ type: "signin.failed", code: expected.code });
    }

    const claims: Array<[string, Record<string, unknown>]> = [
      ["email", { email: "eve\u0000@example.com", email_verified: true }],
      ["name", { name: "Eve\u001b[31m" }],
      ["preferred_username", { preferred_username: "eve\nadmin" }],
      ["phone_number", { phone_number: "+4915\u0000", phone_number_verified: true }],
      ["amr", { amr: ["pwd\u0085"] }],
    ];
    for (const [claim, extra] of claims) {
      it(`an ID token whose ${claim} claim holds a control character: 401 id_token_claim_invalid, audited, nothing stored`, async () => {
        const token = await signer.sign({ iss: ISSUER, aud: "app", sub: uniqueSub(claim), ...extra });
        await expectRefused(
          (requestId) =>
            call("POST", "/auth/id-token/signin", { id_token: token, provider: "idp" }, { "x-request-id": requestId }),
          { status: 401, code: "id_token_claim_invalid", details: { claim }, audited: 1 },
        );
      });
    }

    it("sign-in request fields (provider, device_id, nonce): 400 invalid_characters, nothing written", async () => {
      const token = await signer.sign({ iss: ISSUER, aud: "app", sub: uniqueSub("fields") });
      for (const [field, value] of [
        ["provider", "idp\u0000"],
        ["device_id", "d\u0000"],
        ["nonce", "n\u0007"],
      ] as const) {
        await expectRefused(
          (requestId) =>
            call(
              "POST",
              "/auth/id-token/signin",
              { id_token: token, provider: "idp", [field]: value },
              { "x-request-id": requestId },
            ),
          { status: 400, code: "invalid_characters", details: { field }, audited: 0 },
        );
      }
    });

    it("path and query parameters and admin reasons: 400 invalid_characters, nothing changed", async () => {
      const admin = { "x-admin-key": ADMIN.key };
      await expectRefused(
        () => call("DELETE", "/auth/sessions/ses_%00", undefined, { authorization: `Bearer ${access}` }),
        { status: 400, code: "invalid_characters", details: { field: "session_id" }, audited: 0 },
      );
      await expectRefused(() => call("GET", "/admin/users/usr_%01", undefined, admin), {
        status: 400,
        code: "invalid_characters",
        details: { field: "user_id" },
        audited: 0,
      });
      await expectRefused(() => call("GET", "/admin/users?status=%00", undefined, admin), {
        status: 400,
        code: "invalid_characters",
        details: { field: "status" },
        audited: 0,
      });
      await expectRefused(() => call("POST", `/admin/users/${userId}/disable`, { reason: "fraud\u0000" }, admin), {
        status: 400,
        code: "invalid_characters",
        details: { field: "reason" },
        audited: 0,
      });
      await expectRefused(() => call("POST", `/admin/users/${userId}/lock`, { reason: "x\r\ny" }, admin), {
        status: 400,
        code: "invalid_characters",
        details: { field: "reason" },
        audited: 0,
      });
      expect((await call("GET", `/admin/users/${userId}`, undefined, admin)).body).toMatchObject({
        user: { status: "active" },
      });
    });

    it("the same over Connect and gRPC", async () => {
      const token = await signer.sign({ iss: ISSUER, aud: "app", sub: uniqueSub("rpc") });
      const connect = createClient(
        AuthService,
        createConnectTransport({ baseUrl: t.url, httpVersion: "2", useBinaryFormat: true }),
      );
      const e = await connect.signinWithIdToken({ idToken: token, provider: "idp", deviceId: "a\u0000b" }).then(
        () => null,
        (x: unknown) => ConnectError.from(x),
      );
      expect(e?.code).toBe(Code.InvalidArgument);
      expect(e?.findDetails(ErrorInfoSchema)[0]).toMatchObject({
        reason: "invalid_characters",
        metadata: { field: "device_id" },
      });

      const client = new grpc.Client(grpcTarget(t.url), grpc.credentials.createInsecure());
      try {
        const bad = await signer.sign({
          iss: ISSUER,
          aud: "app",
          sub: uniqueSub("grpc"),
          email: "a\u0000@example.com",
          email_verified: true,
        });
        const r = await grpcSignin(client, { idToken: bad, provider: "idp" }, new grpc.Metadata(), null);
        if (!("error" in r)) throw new Error("expected a refusal");
        const trailers = metadataToHeaders(r.error.metadata);
        trailers.set("grpc-status", String(r.error.code));
        expect(findTrailerError(trailers)?.findDetails(ErrorInfoSchema)[0]).toMatchObject({
          reason: "id_token_claim_invalid",
          metadata: { claim: "email" },
        });
        expect(r.error.code).toBe(grpc.status.UNAUTHENTICATED);
      } finally {
        client.close();
      }
    });
  });
}
