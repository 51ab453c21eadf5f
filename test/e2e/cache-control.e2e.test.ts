/**
 * Answers that carry tokens or personal data are never cacheable (RFC 6749 §5.1), over every
 * protocol and both server paths; public key material stays cacheable.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SigninWithIdTokenRequestSchema } from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { envelope } from "../support/raw-rpc.ts";
import { devIdToken } from "../support/signin-e2e.ts";

describe("Cache-Control on answers", () => {
  let t: TestApp;
  const json = { "content-type": "application/json" };

  beforeAll(async () => {
    t = await startTestApp({ config: { dev: true } });
  });
  afterAll(async () => {
    await t?.close();
  });

  const mint = (sub: string) => devIdToken(t.url, sub, { email: `${sub}@example.com` });
  const rpc = `/identity.v1.AuthService/SigninWithIdToken`;

  it("sign-in answers are no-store over REST, Connect (both paths) and gRPC-Web, refusals too", async () => {
    // A token signs in once: four of them.
    const [t1, t2, t3, t4] = await Promise.all([1, 2, 3, 4].map(() => mint("cache-control")));
    const bodyOf = (token: string) => JSON.stringify({ id_token: token, provider: "dev" });
    const message = toBinary(
      SigninWithIdTokenRequestSchema,
      create(SigninWithIdTokenRequestSchema, { idToken: t4!, provider: "dev" }),
    );
    const frame = envelope(message);
    const answers = await Promise.all([
      fetch(`${t.url}/auth/id-token/signin`, { method: "POST", headers: json, body: bodyOf(t1!) }),
      fetch(`${t.url}${rpc}`, {
        method: "POST",
        headers: { ...json, "connect-protocol-version": "1" },
        body: bodyOf(t2!),
      }),
      fetch(`${t.url}${rpc}`, {
        method: "POST",
        headers: { ...json, "connect-protocol-version": "1", "connect-timeout-ms": "10000" },
        body: bodyOf(t3!),
      }),
      fetch(`${t.url}${rpc}`, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
        body: frame,
      }),
      fetch(`${t.url}/auth/id-token/signin`, {
        method: "POST",
        headers: json,
        body: JSON.stringify({ id_token: "not-a-jwt" }),
      }),
      fetch(`${t.url}${rpc}`, { method: "POST", headers: json, body: JSON.stringify({ id_token: "not-a-jwt" }) }),
    ]);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 400, 400]);
    for (const a of answers) expect(a.headers.get("cache-control")).toBe("no-store");
    const login = (await answers[0]!.json()) as { access_token: string };
    const me = await fetch(`${t.url}/auth/me`, { headers: { authorization: `Bearer ${login.access_token}` } });
    expect(me.status).toBe(200);
    expect(me.headers.get("cache-control")).toBe("no-store");
  });

  it("public keys and discovery stay cacheable", async () => {
    for (const path of ["/.well-known/jwks.json", "/.well-known/openid-configuration"]) {
      expect((await fetch(`${t.url}${path}`)).headers.get("cache-control")).toBe("public, max-age=300");
    }
  });
});
