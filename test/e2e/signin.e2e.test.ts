/**
 * Sign-in with a genuine ID token from a real OpenID provider (oidc-provider, authorization-code
 * flow with PKCE), against a real server on port 0, over every protocol the one port speaks:
 * REST JSON, Connect (JSON and binary, HTTP/1.1 and h2c), gRPC (grpc-js and connect-node) and
 * gRPC-Web.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthService } from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { ErrorInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { startTestOidcProvider, type TestOidcProvider } from "../support/oidc-provider.ts";
import {
  expectLogin,
  expectSnakeCaseLogin,
  grpcSignin,
  grpcTarget,
  metadataToHeaders,
  restSignin,
  tamperSignature,
  uniqueSub,
} from "../support/signin-e2e.ts";

describe("sign-in with a genuine ID token, every protocol on one port", () => {
  let op: TestOidcProvider;
  let testApp: TestApp;
  let url: string;
  const h2Sessions: Http2SessionManager[] = [];

  /** One fresh token per call: each test signs in as its own user. */
  const tokenFor = async (label: string) => {
    const sub = uniqueSub(label);
    const { idToken, nonce } = await op.obtainIdToken({ sub, email: `${sub}@example.com` });
    return { sub, idToken, nonce };
  };

  const h2Session = () => {
    const s = new Http2SessionManager(url);
    h2Sessions.push(s);
    return s;
  };

  beforeAll(async () => {
    op = await startTestOidcProvider();
    testApp = await startTestApp({
      // No jwks_uri: the keys are found through the provider's discovery document.
      config: { providers: { acme: { issuer: op.issuer, client_ids: [op.clientId], link_by_email: "verified" } } },
    });
    url = testApp.url;
  });

  afterAll(async () => {
    for (const s of h2Sessions) s.abort();
    await testApp?.close();
    await op?.close();
  });

  it("REST: POST /auth/id-token/signin answers the LoginResponse in snake_case JSON", async () => {
    const { sub, idToken } = await tokenFor("rest");
    const res = await restSignin(url, { id_token: idToken, provider: "acme" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const login = expectSnakeCaseLogin(res.body);
    const { payload } = await expectLogin(url, login);
    expect(login.user!.email).toBe(`${sub}@example.com`);

    // The session the token names exists, with exactly one refresh token, stored only as a hash.
    const db = testApp.app.database.client;
    const session = await db.session.findUnique({
      where: { id: payload["sid"] as string },
      include: { refreshTokens: true },
    });
    expect(session?.userId).toBe(login.userId);
    expect(session?.refreshTokens).toHaveLength(1);
    expect(JSON.stringify(session)).not.toContain(login.refreshToken!);
    const identity = await db.identity.findUnique({ where: { issuer_subject: { issuer: op.issuer, subject: sub } } });
    expect(identity?.userId).toBe(login.userId);
  });

  it("checks the nonce when the caller sends it", async () => {
    const { idToken, nonce } = await tokenFor("nonce");
    const ok = await restSignin(url, { id_token: idToken, provider: "acme", nonce });
    expect(ok.status).toBe(200);
    const bad = await restSignin(url, { id_token: idToken, provider: "acme", nonce: `${nonce}x` });
    expect(bad.status).toBe(401);
    expect(bad.body["code"]).toBe("id_token_nonce_mismatch");
  });

  it("Connect JSON on the wire uses snake_case too", async () => {
    const { idToken } = await tokenFor("connect-raw");
    const res = await fetch(`${url}/identity.v1.AuthService/SigninWithIdToken`, {
      method: "POST",
      headers: { "content-type": "application/json", "connect-protocol-version": "1" },
      body: JSON.stringify({ id_token: idToken, provider: "acme" }),
    });
    expect(res.status).toBe(200);
    await expectLogin(url, expectSnakeCaseLogin((await res.json()) as Record<string, unknown>));
  });

  for (const httpVersion of ["1.1", "2"] as const) {
    for (const useBinaryFormat of [false, true]) {
      it(`Connect client, HTTP/${httpVersion}, ${useBinaryFormat ? "binary" : "JSON"}`, async () => {
        const { idToken } = await tokenFor(`connect-${httpVersion}-${useBinaryFormat ? "bin" : "json"}`);
        const transport =
          httpVersion === "2"
            ? createConnectTransport({ baseUrl: url, httpVersion, useBinaryFormat, sessionManager: h2Session() })
            : createConnectTransport({ baseUrl: url, httpVersion, useBinaryFormat });
        const client = createClient(AuthService, transport);
        await expectLogin(url, await client.signinWithIdToken({ idToken, provider: "acme" }));
      });
    }
  }

  it("gRPC-Web client (connect-node, HTTP/1.1)", async () => {
    const { idToken } = await tokenFor("grpc-web");
    const client = createClient(AuthService, createGrpcWebTransport({ baseUrl: url, httpVersion: "1.1" }));
    await expectLogin(url, await client.signinWithIdToken({ idToken, provider: "acme" }));
  });

  it("gRPC client (connect-node, h2c)", async () => {
    const { idToken } = await tokenFor("grpc-connect");
    const client = createClient(AuthService, createGrpcTransport({ baseUrl: url, sessionManager: h2Session() }));
    await expectLogin(url, await client.signinWithIdToken({ idToken, provider: "acme" }));
  });

  describe("gRPC with @grpc/grpc-js over h2c", () => {
    let client: grpc.Client;
    beforeAll(() => {
      client = new grpc.Client(grpcTarget(url), grpc.credentials.createInsecure());
    });
    afterAll(() => client?.close());

    it("signs in", async () => {
      const { idToken } = await tokenFor("grpc-js");
      const result = await grpcSignin(client, { idToken, provider: "acme" });
      if ("error" in result) throw result.error;
      await expectLogin(url, result.response);
    });

    it("a rejection carries the gRPC status and an ErrorInfo with the stable code", async () => {
      const { idToken } = await tokenFor("grpc-js-reject");
      const result = await grpcSignin(client, { idToken, provider: "no-such-provider" });
      if (!("error" in result)) throw new Error("expected a rejection");
      expect(result.error.code).toBe(grpc.status.NOT_FOUND);
      expect(result.error.details).toMatch(/not configured/);

      // grpc-status-details-bin is a google.rpc.Status; connect's own trailer parser decodes it.
      const trailers = metadataToHeaders(result.error.metadata);
      expect(trailers.get("grpc-status-details-bin")).toBeTruthy();
      trailers.set("grpc-status", String(result.error.code));
      const decoded = findTrailerError(trailers);
      expect(decoded?.code).toBe(Code.NotFound);
      const [info] = decoded!.findDetails(ErrorInfoSchema);
      expect(info?.reason).toBe("provider_unknown");
      expect(info?.domain).toBe("identity.v1");
    });

    it("a tampered signature is UNAUTHENTICATED, a malformed token INVALID_ARGUMENT", async () => {
      const { idToken } = await tokenFor("grpc-js-tamper");
      const unauth = await grpcSignin(client, { idToken: tamperSignature(idToken), provider: "acme" });
      expect("error" in unauth && unauth.error.code).toBe(grpc.status.UNAUTHENTICATED);

      const malformed = await grpcSignin(client, { idToken: "not-a-jwt", provider: "acme" });
      expect("error" in malformed && malformed.error.code).toBe(grpc.status.INVALID_ARGUMENT);
    });
  });

  it("gRPC error details through connect-node: ConnectError.findDetails(ErrorInfo)", async () => {
    const { idToken } = await tokenFor("grpc-details");
    const client = createClient(AuthService, createGrpcTransport({ baseUrl: url, sessionManager: h2Session() }));
    const error = await client.signinWithIdToken({ idToken: tamperSignature(idToken), provider: "acme" }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(error?.code).toBe(Code.Unauthenticated);
    expect(error?.findDetails(ErrorInfoSchema)[0]?.reason).toBe("id_token_signature_invalid");
  });

  it("without `provider`, the provider is picked by the token's issuer", async () => {
    const { sub, idToken } = await tokenFor("no-provider");
    const res = await restSignin(url, { id_token: idToken });
    expect(res.status).toBe(200);
    const login = expectSnakeCaseLogin(res.body);
    await expectLogin(url, login);
    const identity = await testApp.app.database.client.identity.findUnique({
      where: { issuer_subject: { issuer: op.issuer, subject: sub } },
    });
    expect(identity?.provider).toBe("acme");
  });

  it("one port serves HTTP/1.1 and h2c with prior knowledge side by side", async () => {
    const port = new URL(url).port;
    const viaH1 = await new Promise<{ status: number; version: string }>((resolve, reject) => {
      http
        .get({ host: "127.0.0.1", port, path: "/healthz", agent: false }, (res) => {
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode!, version: res.httpVersion }));
        })
        .on("error", reject);
    });
    expect(viaH1).toEqual({ status: 200, version: "1.1" });

    const session = http2.connect(url);
    try {
      const viaH2 = await new Promise<number>((resolve, reject) => {
        session.once("error", reject);
        const stream = session.request({ ":method": "GET", ":path": "/healthz" });
        stream.on("response", (headers) => resolve(Number(headers[":status"])));
        stream.on("error", reject);
        stream.resume();
        stream.end();
      });
      expect(viaH2).toBe(200);
    } finally {
      session.close();
    }

    // And the RPC itself, both ways, in parallel on the same port.
    const [a, b] = await Promise.all([tokenFor("same-port-h1"), tokenFor("same-port-h2")]);
    const h1 = createClient(AuthService, createConnectTransport({ baseUrl: url, httpVersion: "1.1" }));
    const h2 = createClient(
      AuthService,
      createConnectTransport({ baseUrl: url, httpVersion: "2", sessionManager: h2Session() }),
    );
    const [r1, r2] = await Promise.all([
      h1.signinWithIdToken({ idToken: a.idToken, provider: "acme" }),
      h2.signinWithIdToken({ idToken: b.idToken, provider: "acme" }),
    ]);
    await expectLogin(url, r1);
    await expectLogin(url, r2);
    expect(r1.userId).not.toBe(r2.userId);
  });
});
