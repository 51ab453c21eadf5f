import * as grpc from "@grpc/grpc-js";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthService } from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { totpCode } from "../../src/tokens/totp.ts";
import { postgresKind } from "../support/databases.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { createMovableClock, devIdToken, grpcSignin, grpcTarget, uniqueSub } from "../support/signin-e2e.ts";

type Labels = Record<string, string>;
interface Scrape {
  text: string;
  /** The sum of the samples named `name` whose labels include `labels` (0 when there is none). */
  value(name: string, labels?: Labels): number;
  /** The label sets of the samples named `name`. */
  series(name: string): Labels[];
}

/** GET /metrics, parsed (Prometheus text format). */
async function scrape(baseUrl: string): Promise<Scrape> {
  const res = await fetch(`${baseUrl}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  const samples: { name: string; labels: Labels; value: number }[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) continue;
    const labels: Labels = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  const matching = (name: string, labels: Labels) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return {
    text,
    value: (name, labels = {}) => matching(name, labels).reduce((sum, s) => sum + s.value, 0),
    series: (name) => matching(name, {}).map((s) => s.labels),
  };
}

describe("GET /metrics", () => {
  let t: TestApp;
  const clock = createMovableClock();
  const json = { "content-type": "application/json" };
  const m = "identity.v1.AuthService/SigninWithIdToken";
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${t.url}${path}`, {
      method: "POST",
      headers: { ...json, ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  const mint = (sub: string) => devIdToken(t.url, sub);

  beforeAll(async () => {
    t = await startTestApp({
      config: {
        dev: true,
        providers: {
          // Its keys cannot be fetched: nothing listens on port 9 of loopback.
          down: {
            issuer: "http://127.0.0.1:9/down",
            client_ids: ["c"],
            jwks_uri: "http://127.0.0.1:9/jwks",
            http_timeout_ms: 500,
          },
        },
      },
      overrides: { clock },
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("counts RPCs of every protocol by method, protocol and stable code, times them from 0.5 ms up, and exposes the process", async () => {
    const idToken = await mint(uniqueSub("metered"));
    expect((await post("/auth/id-token/signin", { id_token: idToken, provider: "dev" })).status).toBe(200);
    expect((await post("/auth/id-token/signin", { id_token: "x.y.z", provider: "dev" })).status).toBe(400);
    const connect = createClient(AuthService, createConnectTransport({ baseUrl: t.url, httpVersion: "2" }));
    await expect(connect.signinWithIdToken({ idToken: "x.y.z", provider: "nope" })).rejects.toThrow();
    const client = new grpc.Client(grpcTarget(t.url), grpc.credentials.createInsecure());
    try {
      // Without a deadline: the plain unary path; with one: connect-es's gRPC handler.
      expect("error" in (await grpcSignin(client, { idToken: "x.y.z", provider: "dev" }, undefined, null))).toBe(true);
      expect("error" in (await grpcSignin(client, { idToken: "x.y.z", provider: "dev" }))).toBe(true);
    } finally {
      client.close();
    }

    const s = await scrape(t.url);
    expect(s.value("identity_rpc_requests_total", { method: m, protocol: "rest", code: "ok" })).toBe(1);
    expect(s.value("identity_rpc_requests_total", { method: m, protocol: "rest", code: "id_token_malformed" })).toBe(1);
    expect(s.value("identity_rpc_requests_total", { method: m, protocol: "connect", code: "id_token_malformed" })).toBe(
      1,
    );
    expect(s.value("identity_rpc_requests_total", { method: m, protocol: "grpc", code: "id_token_malformed" })).toBe(2);
    expect(s.value("identity_rpc_duration_seconds_count", { method: m, protocol: "rest" })).toBe(2);
    expect(s.value("identity_rpc_duration_seconds_count", { method: m })).toBe(5);
    // The first bucket is below one millisecond.
    const buckets = s
      .series("identity_rpc_duration_seconds_bucket")
      .filter((l) => l["method"] === m && l["protocol"] === "rest")
      .map((l) => l["le"]);
    expect(buckets[0]).toBe("0.0005");
    expect(buckets).toContain("+Inf");

    // Sign-ins by provider and outcome; a provider no configuration names counts as "other".
    expect(s.value("identity_signins_total", { provider: "dev", outcome: "success" })).toBe(1);
    expect(s.value("identity_signins_total", { provider: "dev", outcome: "id_token_malformed" })).toBe(3);
    expect(s.value("identity_signins_total", { provider: "other", outcome: "id_token_malformed" })).toBe(1);
    expect(s.series("identity_signins_total").map((l) => l["provider"])).not.toContain("nope");
    expect(s.value("identity_signin_risk_total", { level: "low" })).toBe(1);

    // The hot path's two statement batches, and Prisma's statements (the signing keys at start).
    expect(s.value("identity_db_query_duration_seconds_count", { store: "hot", operation: "read_signin" })).toBe(1);
    expect(s.value("identity_db_query_duration_seconds_count", { store: "hot", operation: "commit_signin" })).toBe(1);
    expect(
      s.value("identity_db_query_duration_seconds_count", { store: "prisma", operation: "select" }),
    ).toBeGreaterThan(0);

    // prom-client's process and event-loop defaults.
    expect(s.value("process_cpu_user_seconds_total")).toBeGreaterThan(0);
    expect(s.series("nodejs_eventloop_lag_p99_seconds")).toHaveLength(1);
    expect(s.value("process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(s.text).not.toContain(idToken.split(".")[1]!);
  });

  it("counts key fetches and their failures per provider", async () => {
    const before = await scrape(t.url);
    const res = await post("/auth/id-token/signin", { id_token: await mint(uniqueSub("down")), provider: "down" });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { code: string }).code).toBe("provider_unavailable");
    const after = await scrape(t.url);
    const delta = (name: string, labels: Labels) => after.value(name, labels) - before.value(name, labels);
    expect(delta("identity_jwks_fetches_total", { provider: "down" })).toBe(1);
    expect(delta("identity_jwks_fetch_failures_total", { provider: "down" })).toBe(1);
    expect(delta("identity_signins_total", { provider: "down", outcome: "provider_unavailable" })).toBe(1);
  });

  it("counts MFA challenges, verifications by method and outcome, and risk levels", async () => {
    const sub = uniqueSub("mfa-metered");
    const device = (d: string) => ({ "x-device-id": `${sub}-${d}`, "user-agent": "metrics-e2e/1.0" });
    const first = (await (
      await post("/auth/id-token/signin", { id_token: await mint(sub), provider: "dev" }, device("A"))
    ).json()) as Record<string, string>;
    const bearer = { authorization: `Bearer ${first["access_token"]}` };
    const secret = ((await (await post("/auth/mfa/totp/enroll", {}, bearer)).json()) as { secret: string }).secret;
    const nextStep = () => clock.advance(30_000 - (clock.now().getTime() % 30_000) + 1000);
    nextStep();
    expect((await post("/auth/mfa/totp/confirm", { code: totpCode(secret, clock.now()) }, bearer)).status).toBe(200);

    const before = await scrape(t.url);
    const challenged = (await (
      await post("/auth/id-token/signin", { id_token: await mint(sub), provider: "dev" }, device("B"))
    ).json()) as Record<string, unknown>;
    expect(challenged["requires_mfa"]).toBe(true);
    nextStep();
    const right = totpCode(secret, clock.now());
    const wrong = String((Number(right) + 1) % 1_000_000).padStart(6, "0");
    const verify = (code: string) =>
      post("/auth/mfa/verify", { challenge_token: challenged["challenge_token"], method: "totp", code }, device("B"));
    expect((await verify(wrong)).status).toBe(403);
    expect((await verify(right)).status).toBe(200);
    expect(
      (await post("/auth/mfa/verify", { challenge_token: "chg_nope", method: "sms", code: "123456" })).status,
    ).toBe(400);

    const after = await scrape(t.url);
    const delta = (name: string, labels: Labels) => after.value(name, labels) - before.value(name, labels);
    expect(delta("identity_signins_total", { provider: "dev", outcome: "mfa_required" })).toBe(1);
    expect(delta("identity_mfa_challenges_total", { provider: "dev" })).toBe(1);
    expect(delta("identity_signin_risk_total", { level: "medium" })).toBe(1);
    expect(delta("identity_mfa_verifications_total", { method: "totp", outcome: "mfa_code_invalid" })).toBe(1);
    expect(delta("identity_mfa_verifications_total", { method: "totp", outcome: "success" })).toBe(1);
    // A method we do not have is labelled `unknown`, never with what the request said.
    expect(delta("identity_mfa_verifications_total", { method: "unknown", outcome: "mfa_method_not_available" })).toBe(
      1,
    );
  });

  it("counts undecodable requests as malformed by protocol, and those that reached an RPC as its invalid_request", async () => {
    const before = await scrape(t.url);
    expect((await post("/auth/id-token/signin", "{not json")).status).toBe(400);
    expect((await post("/auth/id-token/signin", "{}", { "content-type": "text/plain" })).status).toBe(415);
    expect((await fetch(`${t.url}/auth/id-token/signin`, { method: "GET" })).status).toBe(405);
    expect((await post(`/${m}`, "{not json")).status).toBe(400);
    expect((await post(`/${m}`, { id_token: 7 })).status).toBe(400);
    const after = await scrape(t.url);
    const delta = (name: string, labels: Labels) => after.value(name, labels) - before.value(name, labels);
    expect(delta("identity_malformed_requests_total", { protocol: "rest" })).toBe(3);
    expect(delta("identity_malformed_requests_total", { protocol: "connect" })).toBe(2);
    // The undecodable bodies reached their RPC, which refused them; 415 and 405 never did.
    expect(delta("identity_rpc_requests_total", { code: "invalid_request" })).toBe(3);
    expect(delta("identity_rpc_requests_total", {})).toBe(3);
  });
});

describe("server.metrics_port", () => {
  it("serves GET /metrics on its own port, and no longer on the main one", async () => {
    const t = await startTestApp({ config: { "server.metrics_port": 0 } });
    try {
      expect(t.app.metricsUrl()).not.toBe(t.url);
      expect((await fetch(`${t.url}/metrics`)).status).toBe(404);
      expect((await fetch(`${t.app.metricsUrl()}/other`)).status).toBe(404);
      const s = await scrape(t.app.metricsUrl());
      expect(s.text).toContain("# TYPE identity_rpc_requests_total counter");
    } finally {
      await t.close();
    }
  });
});

const pg = postgresKind();
describe("metrics on PostgreSQL", pg.suiteOptions, () => {
  it("expose the connection pool", async () => {
    const t = await startTestApp({ kind: pg, config: { "database.pool_size": 4 } });
    try {
      const s = await scrape(t.url);
      expect(s.value("identity_db_pool_connections", { state: "max" })).toBe(4);
      expect(s.value("identity_db_pool_connections", { state: "open" })).toBeGreaterThanOrEqual(1);
      expect(
        s
          .series("identity_db_pool_connections")
          .map((l) => l["state"])
          .sort(),
      ).toEqual(["idle", "max", "open", "waiting"]);
    } finally {
      await t.close();
    }
  });
});
