import { connect, constants } from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AuthService } from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import {
  devIdToken,
  expectLogin,
  grpcSignin,
  grpcTarget,
  metadataToHeaders,
  rowCounts,
} from "../support/signin-e2e.ts";

/**
 * Unary gRPC and Connect calls have two server paths (src/rpc/unary-fast-path.ts): plain calls are
 * answered directly; calls with a deadline (grpc-timeout / connect-timeout-ms) or compression go
 * through connect-es. The same call must give the same answer, status and error on both.
 */
describe("unary calls: the plain path and connect-es agree", () => {
  let t: TestApp;
  let client: grpc.Client;

  beforeAll(async () => {
    t = await startTestApp({ config: { dev: true } });
    client = new grpc.Client(grpcTarget(t.url), grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    client?.close();
    await t?.close();
  });

  const mint = (sub: string) => devIdToken(t.url, sub, { email: `${sub}@example.com` });

  it("signs in with and without a deadline, with the same login result", async () => {
    // A token signs in once: one of its own per path.
    const plain = await grpcSignin(
      client,
      { idToken: await mint("grpc-plain"), provider: "dev", deviceId: "d1" },
      new grpc.Metadata(),
      null,
    );
    const viaConnect = await grpcSignin(
      client,
      { idToken: await mint("grpc-plain"), provider: "dev", deviceId: "d1" },
      new grpc.Metadata(),
      10_000,
    );
    if (!("response" in plain) || !("response" in viaConnect))
      throw new Error(`gRPC failed: ${JSON.stringify([plain, viaConnect])}`);
    await expectLogin(t.url, plain.response);
    await expectLogin(t.url, viaConnect.response);
    expect(plain.response.userId).toBe(viaConnect.response.userId);
    expect(plain.response.user).toEqual(viaConnect.response.user);
  });

  it("refuses a bad token with the same status, message and ErrorInfo on both paths, writing only the audit row", async () => {
    const before = await rowCounts(t.app);
    const results = await Promise.all(
      [null, 10_000].map((deadline) =>
        grpcSignin(client, { idToken: "not-a-jwt", provider: "dev" }, new grpc.Metadata(), deadline),
      ),
    );
    const errors = results.map((r) => ("error" in r ? r.error : null));
    for (const error of errors) {
      expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
      // grpc-status-details-bin is a google.rpc.Status; connect's own trailer parser decodes it.
      const trailers = metadataToHeaders(error!.metadata);
      trailers.set("grpc-status", String(error!.code));
      const decoded = findTrailerError(trailers);
      expect(decoded?.code).toBe(Code.InvalidArgument);
      const [info] = decoded!.findDetails(ErrorInfoSchema);
      expect(info?.reason).toBe("id_token_malformed");
      expect(info?.domain).toBe("identity.v1");
    }
    expect(errors[0]?.details).toBe(errors[1]?.details);
    const after = await rowCounts(t.app);
    expect({ ...after, auditEvents: after.auditEvents - 2 }).toEqual(before);
  });

  it("answers a compressed request through connect-es", async () => {
    const compressed = new grpc.Client(grpcTarget(t.url), grpc.credentials.createInsecure(), {
      "grpc.default_compression_algorithm": grpc.compressionAlgorithms.gzip,
    });
    try {
      const r = await grpcSignin(
        compressed,
        { idToken: await mint("grpc-gzip"), provider: "dev" },
        new grpc.Metadata(),
        null,
      );
      if (!("response" in r)) throw new Error(`gRPC failed: ${r.error.message}`);
      await expectLogin(t.url, r.response);
    } finally {
      compressed.close();
    }
  });

  it("answers broken framing with a gRPC status, not a crash or a hang", async () => {
    const session = connect(t.url);
    try {
      const call = (body: Buffer) =>
        new Promise<{ status: number; trailers: Record<string, unknown> }>((resolve, reject) => {
          const stream = session.request({
            [constants.HTTP2_HEADER_METHOD]: "POST",
            [constants.HTTP2_HEADER_PATH]: "/identity.v1.AuthService/SigninWithIdToken",
            "content-type": "application/grpc",
            te: "trailers",
          });
          let status = 0;
          stream.on("response", (headers) => (status = Number(headers[":status"])));
          stream.on("trailers", (trailers) => resolve({ status, trailers }));
          stream.on("error", reject);
          stream.resume();
          stream.end(body);
        });
      // Promises 100 bytes, sends 3; then a compressed flag without grpc-encoding; then nothing.
      const short = await call(Buffer.from([0, 0, 0, 0, 100, 1, 2, 3]));
      const flagged = await call(Buffer.from([1, 0, 0, 0, 0]));
      const empty = await call(Buffer.alloc(0));
      for (const r of [short, flagged, empty]) {
        expect(r.status).toBe(200);
        expect(Number(r.trailers["grpc-status"])).not.toBe(0);
      }
      expect(Number(short.trailers["grpc-status"])).toBe(grpc.status.INVALID_ARGUMENT);
      // The service still answers.
      expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
    } finally {
      session.close();
    }
  });

  describe("Connect", () => {
    for (const useBinaryFormat of [false, true]) {
      it(`signs in and refuses alike with and without a timeout (${useBinaryFormat ? "binary" : "JSON"})`, async () => {
        const auth = createClient(
          AuthService,
          createConnectTransport({ baseUrl: t.url, httpVersion: "1.1", useBinaryFormat }),
        );
        const sub = `connect-${String(useBinaryFormat)}`;
        const plain = await auth.signinWithIdToken({ idToken: await mint(sub), provider: "dev", deviceId: "d1" });
        const viaConnect = await auth.signinWithIdToken(
          { idToken: await mint(sub), provider: "dev", deviceId: "d1" },
          { timeoutMs: 10_000 },
        );
        await expectLogin(t.url, plain);
        await expectLogin(t.url, viaConnect);
        expect(plain.user).toEqual(viaConnect.user);

        const errors = await Promise.all(
          [undefined, 10_000].map((timeoutMs) =>
            auth.signinWithIdToken({ idToken: "not-a-jwt", provider: "dev" }, { timeoutMs }).then(
              () => null,
              (e: unknown) => ConnectError.from(e),
            ),
          ),
        );
        for (const error of errors) {
          expect(error?.code).toBe(Code.InvalidArgument);
          expect(error?.findDetails(ErrorInfoSchema)[0]?.reason).toBe("id_token_malformed");
        }
        expect(errors[0]?.rawMessage).toBe(errors[1]?.rawMessage);
      });
    }

    it("answers a body that is not the request message with the same status on both paths", async () => {
      const send = (extra: Record<string, string>, body: string) =>
        fetch(`${t.url}/identity.v1.AuthService/SigninWithIdToken`, {
          method: "POST",
          headers: { "content-type": "application/json", "connect-protocol-version": "1", ...extra },
          body,
        });
      for (const body of ["{not json", `{"no_such_field": 1}`]) {
        const [plain, viaConnect] = await Promise.all([send({}, body), send({ "connect-timeout-ms": "10000" }, body)]);
        expect(plain.status).toBe(400);
        expect(viaConnect.status).toBe(400);
        const [a, b] = [(await plain.json()) as { code: string }, (await viaConnect.json()) as { code: string }];
        expect(a.code).toBe("invalid_argument");
        expect(b.code).toBe("invalid_argument");
      }
    });
  });
});
