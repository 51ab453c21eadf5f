import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthService } from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { startTestApp, type TestApp } from "../support/app.ts";

describe("GET /metrics", () => {
  let t: TestApp;
  const json = { "content-type": "application/json" };
  beforeAll(async () => {
    t = await startTestApp({ config: { dev: true } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("counts RPCs of every protocol by method and stable outcome code, and times them", async () => {
    const minted = (await (await fetch(`${t.url}/dev/oidc/token`, { method: "POST", headers: json, body: JSON.stringify({ sub: "metered" }) })).json()) as { id_token: string };
    expect((await fetch(`${t.url}/auth/id-token/signin`, { method: "POST", headers: json, body: JSON.stringify({ id_token: minted.id_token, provider: "dev" }) })).status).toBe(200);
    expect((await fetch(`${t.url}/auth/id-token/signin`, { method: "POST", headers: json, body: JSON.stringify({ id_token: "x.y.z", provider: "dev" }) })).status).toBe(400);
    const connect = createClient(AuthService, createConnectTransport({ baseUrl: t.url, httpVersion: "2" }));
    await connect.signinWithIdToken({ idToken: "x.y.z", provider: "nope" }).catch(() => undefined);

    const res = await fetch(`${t.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const text = await res.text();
    const m = "identity.v1.AuthService/SigninWithIdToken";
    expect(text).toContain(`identity_rpc_requests_total{method="${m}",code="ok"} 1`);
    expect(text).toContain(`identity_rpc_requests_total{method="${m}",code="id_token_malformed"} 2`);
    expect(text).toContain(`identity_rpc_duration_seconds_count{method="${m}"} 3`);
    expect(text).toMatch(new RegExp(`identity_rpc_duration_seconds_bucket\\{method="${m}",le="\\+Inf"\\} 3`));
    expect(text).not.toContain(minted.id_token.split(".")[1]!);
  });
});
