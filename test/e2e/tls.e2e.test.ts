import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AuthService,
  LoginResponseSchema,
  SigninWithIdTokenRequestSchema,
} from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { startTestApp, type TestApp } from "../support/app.ts";

/** A throwaway CA-less self-signed certificate for 127.0.0.1, made with the system's openssl. */
function selfSigned(dir: string): { cert: string; key: string } {
  const cert = join(dir, "tls.crt");
  const key = join(dir, "tls.key");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
      "-keyout",
      key,
      "-out",
      cert,
    ],
    { stdio: "ignore" },
  );
  return { cert, key };
}

describe("TLS on the same port: ALPN h2 and http/1.1", () => {
  let dir: string;
  let t: TestApp;
  let ca: Buffer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "identity-tls-"));
    const { cert, key } = selfSigned(dir);
    ca = readFileSync(cert);
    t = await startTestApp({ config: { dev: true, "server.tls": { cert_file: cert, key_file: key } } });
  });
  afterAll(async () => {
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function mint(sub: string): Promise<string> {
    const body = await new Promise<string>((resolve, reject) => {
      const req = https.request(
        `${t.url}/dev/oidc/token`,
        { method: "POST", ca, headers: { "content-type": "application/json" } },
        (res) => {
          let data = "";
          res.on("data", (d: Buffer) => (data += d.toString()));
          res.on("end", () => resolve(data));
        },
      );
      req.on("error", reject);
      req.end(JSON.stringify({ sub }));
    });
    return (JSON.parse(body) as { id_token: string }).id_token;
  }

  it("serves https over HTTP/1.1 (ALPN http/1.1)", async () => {
    expect(t.url.startsWith("https://")).toBe(true);
    const { status, alpn } = await new Promise<{ status: number; alpn: string | false | null }>((resolve, reject) => {
      const options = { ca, ALPNProtocols: ["http/1.1"] } as https.RequestOptions;
      const req = https.get(`${t.url}/healthz`, options, (res) => {
        res.resume();
        resolve({
          status: res.statusCode ?? 0,
          alpn: (res.socket as unknown as { alpnProtocol: string | false }).alpnProtocol,
        });
      });
      req.on("error", reject);
    });
    expect(status).toBe(200);
    expect(alpn).toBe("http/1.1");
  });

  it("serves Connect over HTTP/2 (ALPN h2)", async () => {
    const idToken = await mint("tls-connect");
    const client = createClient(
      AuthService,
      createConnectTransport({ baseUrl: t.url, httpVersion: "2", nodeOptions: { ca } }),
    );
    const res = await client.signinWithIdToken({ idToken, provider: "dev" });
    expect(res.userId).toMatch(/^usr_/);
    expect(res.tokenType).toBe("Bearer");
  });

  it("serves gRPC to @grpc/grpc-js with TLS", async () => {
    const idToken = await mint("tls-grpc");
    const client = new grpc.Client(t.url.replace("https://", ""), grpc.credentials.createSsl(ca));
    try {
      const res = await new Promise<Uint8Array>((resolve, reject) => {
        client.makeUnaryRequest(
          "/identity.v1.AuthService/SigninWithIdToken",
          (m: Uint8Array) => Buffer.from(m),
          (b: Buffer) => new Uint8Array(b),
          toBinary(
            SigninWithIdTokenRequestSchema,
            create(SigninWithIdTokenRequestSchema, { idToken, provider: "dev" }),
          ),
          (err, value) => (err ? reject(err) : resolve(value!)),
        );
      });
      expect(fromBinary(LoginResponseSchema, res).accessToken).toMatch(/^eyJ/);
    } finally {
      client.close();
    }
  });
});
