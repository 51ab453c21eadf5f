import { gzipSync } from "node:zlib";
import { connect, constants } from "node:http2";
import { createConnection } from "node:net";
import { Code } from "@connectrpc/connect";
import { createLogger } from "../../src/logger.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.ts";
import { envelope, RawRpc, restCall, type RpcOutcome, rpcCount } from "../support/raw-rpc.ts";
import { rowCounts } from "../support/signin-e2e.ts";

/**
 * Regression: a request body that is not protobuf answered 500 `internal` with the
 * parser's words ("parse binary: premature EOF") over Connect binary, gRPC and gRPC-Web, and was
 * counted nowhere. Every protocol and both server paths now answer 400 / INVALID_ARGUMENT
 * `invalid_request` with our own message, counted in metrics under that code.
 */
describe("a body that is not the request message", () => {
  let t: TestApp;
  let raw: RawRpc;
  const logged: string[] = [];
  const signin = "/identity.v1.AuthService/SigninWithIdToken";
  const method = "identity.v1.AuthService/SigninWithIdToken";
  const ourMessage = "the request body is not a valid identity.v1.SigninWithIdTokenRequest message";
  // Field 1 (id_token) promises 127 bytes and ends.
  const broken = Uint8Array.from([0x0a, 0x7f, 0x41]);

  beforeAll(async () => {
    t = await startTestApp({
      config: { dev: true },
      logger: createLogger({ level: "warn", write: (line) => logged.push(line) }),
    });
    raw = new RawRpc(t.url);
  });
  afterAll(async () => {
    raw?.close();
    await t?.close();
  });

  function expectRefused(outcome: RpcOutcome): void {
    expect(outcome).toEqual({
      httpStatus: outcome.httpStatus,
      code: Code.InvalidArgument,
      reason: "invalid_request",
      message: ourMessage,
    });
  }

  const cases: Array<[string, () => Promise<RpcOutcome>]> = [
    ["Connect binary (plain path)", () => raw.connect(signin, broken)],
    ["Connect binary, gzip (connect-es)", () => raw.connect(signin, gzipSync(broken), { "content-encoding": "gzip" })],
    ["Connect binary with a timeout (connect-es)", () => raw.connect(signin, broken, { "connect-timeout-ms": "5000" })],
    [
      "Connect JSON of the wrong type (plain path)",
      () => raw.connect(signin, Buffer.from('{"id_token": 5}'), { "content-type": "application/json" }),
    ],
    [
      "Connect JSON, not JSON (connect-es)",
      () => raw.connect(signin, Buffer.from("{"), { "content-type": "application/json", "connect-timeout-ms": "5000" }),
    ],
    ["gRPC (plain path)", () => raw.grpc(signin, envelope(broken))],
    ["gRPC with a deadline (connect-es)", () => raw.grpc(signin, envelope(broken), { "grpc-timeout": "5S" })],
    [
      "gRPC, gzip-compressed message (connect-es)",
      () => raw.grpc(signin, envelope(gzipSync(broken), 1), { "grpc-encoding": "gzip" }),
    ],
    [
      "gRPC, a frame shorter than it promises (plain path)",
      () => raw.grpc(signin, Buffer.from([0, 0, 0, 0, 100, 1, 2, 3])),
    ],
    ["gRPC, compressed flag without grpc-encoding (plain path)", () => raw.grpc(signin, envelope(Buffer.alloc(0), 1))],
    ["gRPC, no frame at all (plain path)", () => raw.grpc(signin, Buffer.alloc(0))],
    ["gRPC-Web (connect-es)", () => raw.grpcWeb(signin, envelope(broken))],
    [
      "gRPC-Web, two frames (connect-es)",
      () => raw.grpcWeb(signin, Buffer.concat([envelope(new Uint8Array(0)), envelope(new Uint8Array(0))])),
    ],
    ["REST, not JSON", () => restCall(t.url, "POST", "/auth/id-token/signin", "{")],
    ["REST, JSON of the wrong type", () => restCall(t.url, "POST", "/auth/id-token/signin", '{"id_token": 5}')],
    ["REST, not a JSON object", () => restCall(t.url, "POST", "/auth/id-token/signin", "[1]")],
  ];

  for (const [name, call] of cases) {
    it(`${name}: 400 / INVALID_ARGUMENT invalid_request with our message, counted, nothing written`, async () => {
      const before = await rowCounts(t.app);
      const counted = await rpcCount(t.url, method, "invalid_request");
      const outcome = await call();
      expectRefused(outcome);
      if (!name.startsWith("gRPC")) expect(outcome.httpStatus).toBe(400);
      else expect(outcome.httpStatus).toBe(200);
      expect(await rpcCount(t.url, method, "invalid_request")).toBe(counted + 1);
      expect(await rowCounts(t.app)).toEqual(before);
    });
  }

  it("is refused before credentials are looked at, on an authenticated RPC too", async () => {
    const outcomes = [
      await raw.connect("/identity.v1.UserService/RevokeSession", broken),
      await raw.grpc("/identity.v1.UserService/RevokeSession", envelope(broken)),
      await raw.grpcWeb("/identity.v1.AdminService/GetUser", envelope(broken)),
    ];
    for (const o of outcomes) {
      expect(o.code).toBe(Code.InvalidArgument);
      expect(o.reason).toBe("invalid_request");
      expect(o.message).not.toMatch(/premature|EOF|parse|binary|wire/i);
    }
    expect(await rpcCount(t.url, "identity.v1.UserService/RevokeSession", "invalid_request")).toBe(2);
  });

  it("a body that breaks off on the connect-es path (HTTP/1.1 and HTTP/2) is the client's loss: no error logged, the service answers", async () => {
    const { hostname: host, port } = new URL(t.url);
    const socket = createConnection({ host, port: Number(port) });
    await new Promise((r) => socket.once("connect", r));
    socket.write(
      `POST ${signin} HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/grpc-web+proto\r\ncontent-length: 100\r\n\r\n`,
    );
    socket.write(Buffer.from([0, 0, 0, 0, 95, 1, 2]));
    await new Promise((r) => setTimeout(r, 100));
    socket.destroy();

    const session = connect(t.url);
    try {
      const stream = session.request({
        [constants.HTTP2_HEADER_METHOD]: "POST",
        [constants.HTTP2_HEADER_PATH]: signin,
        "content-type": "application/grpc-web+proto",
      });
      stream.on("error", () => undefined);
      stream.write(Buffer.from([0, 0, 0, 0, 50, 1, 2]));
      await new Promise((r) => setTimeout(r, 50));
      stream.close(constants.NGHTTP2_CANCEL);
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      session.close();
    }
    expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
    expect(logged.filter((l) => l.includes('"level":"error"'))).toEqual([]);
  });
});
