import * as grpc from "@grpc/grpc-js";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { AuthService } from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { createLogger, REDACTED_FIELDS } from "../../src/logger.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { grpcSignin, grpcTarget, newRequestId, devIdToken } from "../support/signin-e2e.ts";

/**
 * Logs never carry tokens, secrets or personal data: whatever happens (success, refusal,
 * refresh, reuse), no log line contains a token, the e-mail address or the external subject.
 */
describe("what the service logs", () => {
  let t: TestApp;
  const lines: string[] = [];
  const json = { "content-type": "application/json" };

  beforeAll(async () => {
    t = await startTestApp({
      config: { dev: true },
      logger: createLogger({ level: "debug", write: (l) => lines.push(l) }),
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("contains no tokens, e-mail addresses or subjects, but does record refusals with their codes", async () => {
    const secrets: string[] = [];
    const sub = "log-subject-4711";
    const email = "private.person@example.com";
    const idToken = await devIdToken(t.url, sub, { email });
    secrets.push(idToken, sub, email);
    const call = (path: string, body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${t.url}${path}`, { method: "POST", headers: { ...json, ...headers }, body: JSON.stringify(body) });

    const ok = (await (await call("/auth/id-token/signin", { id_token: idToken, provider: "dev" })).json()) as Record<
      string,
      string
    >;
    secrets.push(ok["access_token"]!, ok["refresh_token"]!);
    const tampered = `${idToken.slice(0, -8)}AAAAAAAA`;
    secrets.push(tampered);
    expect((await call("/auth/id-token/signin", { id_token: tampered, provider: "dev" })).status).toBe(401);
    expect((await call("/auth/id-token/signin", { id_token: "not-a-jwt", provider: "dev" })).status).toBe(400);
    const rotated = (await (
      await call("/auth/token/refresh", { refresh_token: ok["refresh_token"] })
    ).json()) as Record<string, string>;
    secrets.push(rotated["access_token"]!, rotated["refresh_token"]!);
    expect((await call("/auth/token/refresh", { refresh_token: ok["refresh_token"] })).status).toBe(401);
    expect(
      (await fetch(`${t.url}/auth/me`, { headers: { authorization: `Bearer ${rotated["access_token"]}` } })).status,
    ).toBe(401);

    const all = lines.join("");
    expect(lines.length).toBeGreaterThan(3);
    for (const secret of secrets) expect(all).not.toContain(secret);
    // Tokens in part (e.g. a signature or payload segment) do not leak either.
    for (const token of [idToken, ok["access_token"]!]) {
      for (const segment of token.split(".")) expect(all).not.toContain(segment);
    }
    expect(all).toContain('"code":"id_token_signature_invalid"');
    expect(all).toContain('"code":"refresh_token_reused"');
  });

  /** The parsed lines that mention `requestId`. */
  const linesOf = (requestId: string) =>
    lines.filter((l) => l.includes(requestId)).map((l) => JSON.parse(l) as Record<string, unknown>);

  it("writes one access line per request, at info, on every protocol and path, and nothing else for a sign-in", async () => {
    // A token signs in once: one for each successful sign-in below.
    const mintOne = () => devIdToken(t.url, "access-log-1", { email: "access.log@example.com" });
    const [idToken, connectToken, grpcToken] = [await mintOne(), await mintOne(), await mintOne()];
    const ids = {
      rest: newRequestId(),
      connect: newRequestId(),
      grpcFast: newRequestId(),
      grpc: newRequestId(),
      grpcWeb: newRequestId(),
      plain: newRequestId(),
      bad: newRequestId(),
      none: newRequestId(),
    };
    const m = "/identity.v1.AuthService/SigninWithIdToken";

    const before = lines.length;
    const rest = await fetch(`${t.url}/auth/id-token/signin`, {
      method: "POST",
      headers: { ...json, "x-request-id": ids.rest },
      body: JSON.stringify({ id_token: idToken, provider: "dev" }),
    });
    expect(rest.status).toBe(200);
    await vi.waitFor(() => expect(linesOf(ids.rest)).toHaveLength(1));
    // The budget of the sign-in path: one line, whoever writes it.
    expect(lines.length - before).toBe(1);
    // Connect JSON over HTTP/1.1 (the plain unary path) and gRPC-Web (connect-es's handler).
    await createClient(AuthService, createConnectTransport({ baseUrl: t.url, httpVersion: "1.1" })).signinWithIdToken(
      { idToken: connectToken, provider: "dev" },
      { headers: { "x-request-id": ids.connect } },
    );
    await expect(
      createClient(AuthService, createGrpcWebTransport({ baseUrl: t.url, httpVersion: "1.1" })).signinWithIdToken(
        { idToken: "x.y.z", provider: "dev" },
        { headers: { "x-request-id": ids.grpcWeb } },
      ),
    ).rejects.toThrow();
    const client = new grpc.Client(grpcTarget(t.url), grpc.credentials.createInsecure());
    try {
      const md = (id: string) => {
        const metadata = new grpc.Metadata();
        metadata.set("x-request-id", id);
        return metadata;
      };
      expect(
        "response" in (await grpcSignin(client, { idToken: grpcToken, provider: "dev" }, md(ids.grpcFast), null)),
      ).toBe(true);
      expect("error" in (await grpcSignin(client, { idToken: "x.y.z", provider: "dev" }, md(ids.grpc)))).toBe(true);
    } finally {
      client.close();
    }
    expect((await fetch(`${t.url}/healthz`, { headers: { "x-request-id": ids.plain } })).status).toBe(200);
    expect(
      (
        await fetch(`${t.url}/auth/id-token/signin`, {
          method: "POST",
          headers: { ...json, "x-request-id": ids.bad },
          body: "{",
        })
      ).status,
    ).toBe(400);
    expect((await fetch(`${t.url}/nowhere/${ids.none}`, { headers: { "x-request-id": ids.none } })).status).toBe(404);

    const expected: [string, Record<string, unknown>][] = [
      [ids.rest, { method: "POST", route: "/auth/id-token/signin", status: 200, protocol: "rest", code: "ok" }],
      [ids.connect, { method: "POST", route: m, status: 200, protocol: "connect", code: "ok" }],
      [ids.grpcWeb, { method: "POST", route: m, status: 200, protocol: "grpc-web", code: "id_token_malformed" }],
      [ids.grpcFast, { method: "POST", route: m, status: 200, protocol: "grpc", code: "ok" }],
      [ids.grpc, { method: "POST", route: m, status: 200, protocol: "grpc", code: "id_token_malformed" }],
      [ids.plain, { method: "GET", route: "/healthz", status: 200, protocol: "http" }],
      [
        ids.bad,
        { method: "POST", route: "/auth/id-token/signin", status: 400, protocol: "rest", code: "invalid_request" },
      ],
      [ids.none, { method: "GET", route: null, status: 404, protocol: "http" }],
    ];
    for (const [id, fields] of expected) {
      // Written once the answer is out, so a client may see the answer a moment before.
      await vi.waitFor(() =>
        expect(
          linesOf(id),
          `${id} ${JSON.stringify(fields)} ${lines.filter((l) => l.includes("grpc-web") || l.includes("SigninWithIdToken")).join("")}`,
        ).not.toHaveLength(0),
      );
      const mine = linesOf(id);
      // One line per request (a sign-in, accepted or refused, writes nothing else).
      expect(mine, id).toHaveLength(1);
      expect(mine[0]).toMatchObject({ level: "info", msg: "request", request_id: id, ...fields });
      expect(mine[0]!["duration_ms"]).toBeTypeOf("number");
      expect(mine[0]!["time"]).toMatch(/^\d{4}-\d\d-\d\dT/);
    }
    // An unmatched path has no code and is not logged as a route.
    expect(linesOf(ids.none)[0]).not.toHaveProperty("code");
    const all = lines.join("");
    for (const secret of [
      idToken,
      "access-log-1",
      "access.log@example.com",
      ((await rest.json()) as Record<string, string>)["access_token"]!,
    ]) {
      expect(all).not.toContain(secret);
    }
  });

  it("redacts tokens, codes, e-mail addresses and subjects by the logger's configuration, whoever logs them", () => {
    const out: string[] = [];
    const logger = createLogger({ level: "debug", write: (l) => out.push(l) });
    const fields = Object.fromEntries(REDACTED_FIELDS.map((f) => [f, `secret-${f}`]));
    logger.info("careless", {
      ...fields,
      detail: { email: "secret-nested-email", sub: "secret-nested-sub", mfa_code: "secret-nested-code" },
      headers: { authorization: "Bearer secret-h" },
      code: "id_token_expired",
    });
    logger.error("careless too", { fields: { id_token: "secret-f", subject: "secret-g" } });
    const text = out.join("");
    expect(text).not.toContain("secret-");
    expect(text).toContain('"code":"id_token_expired"');
    const first = JSON.parse(out[0]!) as Record<string, unknown>;
    expect(first["email"]).toBe("[redacted]");
    expect(first["id_token"]).toBe("[redacted]");
    expect(first["x-admin-key"]).toBe("[redacted]");
    expect(first["detail"]).toEqual({ email: "[redacted]", sub: "[redacted]", mfa_code: "[redacted]" });
  });
});
