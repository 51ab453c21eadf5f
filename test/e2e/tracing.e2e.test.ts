/**
 * OpenTelemetry tracing end to end: a real server, a real OpenID provider (so the JWKS is
 * fetched over HTTP), spans caught by an in-memory exporter. Off by default, and then not one
 * span is made on the sign-in path.
 */
import { randomBytes } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { context, propagation, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { loadConfig } from "../../src/config/load.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { startTestOidcProvider, type TestOidcProvider } from "../support/oidc-provider.ts";
import { devIdToken, grpcSignin, grpcTarget, restSignin, uniqueSub } from "../support/signin-e2e.ts";

const RPC = "identity.v1.AuthService/SigninWithIdToken";

function traceparent() {
  const traceId = randomBytes(16).toString("hex");
  const spanId = randomBytes(8).toString("hex");
  return { traceId, spanId, header: `00-${traceId}-${spanId}-01` };
}

const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;
const idOf = (s: ReadableSpan) => s.spanContext().spanId;

describe("tracing", () => {
  let op: TestOidcProvider;
  beforeAll(async () => {
    op = await startTestOidcProvider();
  });
  afterAll(async () => {
    await op?.close();
  });

  it("is off by default, and then a sign-in makes no span at all (even with a tracer provider registered)", async () => {
    const defaults = loadConfig({ env: {} }).tracing;
    expect(defaults.enabled).toBeUndefined();
    expect(defaults.otlp_endpoint).toBeUndefined();
    // The standard variable turns it on.
    expect(loadConfig({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" } }).tracing.otlp_endpoint).toBe(
      "http://collector:4318",
    );
    // Someone else's provider in the process: if the sign-in path called the API, it would record.
    const exporter = new InMemorySpanExporter();
    const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    provider.register();
    const t = await startTestApp({ config: { dev: true } });
    try {
      const idToken = await devIdToken(t.url, uniqueSub("untraced"));
      const res = await restSignin(
        t.url,
        { id_token: idToken, provider: "dev" },
        { headers: { traceparent: traceparent().header } },
      );
      expect(res.status).toBe(200);
      expect(exporter.getFinishedSpans()).toEqual([]);
    } finally {
      await t.close();
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    }
  });

  describe("on, with an in-memory exporter", () => {
    let t: TestApp;
    const exporter = new InMemorySpanExporter();
    beforeAll(async () => {
      t = await startTestApp({
        config: {
          "tracing.enabled": true,
          "server.cors.allowed_origins": ["https://app.example"],
          providers: { acme: { issuer: op.issuer, client_ids: [op.clientId] } },
        },
        overrides: { spanExporter: exporter },
      });
    });
    afterAll(async () => {
      await t?.close();
    });

    it("gives one sign-in a span tree under the caller's traceparent: RPC > verify > JWKS fetch, RPC > database read and write", async () => {
      const { idToken, nonce } = await op.obtainIdToken({ sub: uniqueSub("traced") });
      const parent = traceparent();
      exporter.reset();
      const res = await restSignin(
        t.url,
        { id_token: idToken, provider: "acme", nonce },
        { headers: { traceparent: parent.header } },
      );
      expect(res.status).toBe(200);
      await vi.waitFor(() => expect(exporter.getFinishedSpans().map((s) => s.name)).toContain(RPC));
      const spans = exporter.getFinishedSpans();
      expect(spans.map((s) => s.name).sort()).toEqual(
        [RPC, "db commit_signin", "db read_signin", "id_token verify", "jwks fetch"].sort(),
      );
      const byName = new Map(spans.map((s) => [s.name, s]));
      const rpc = byName.get(RPC)!;
      // Continued from the caller: same trace, the caller's span as parent.
      for (const s of spans) expect(s.spanContext().traceId).toBe(parent.traceId);
      expect(parentOf(rpc)).toBe(parent.spanId);
      expect(rpc.kind).toBe(SpanKind.SERVER);
      expect(rpc.attributes).toMatchObject({
        "rpc.service": "identity.v1.AuthService",
        "rpc.method": "SigninWithIdToken",
        "identity.protocol": "rest",
      });
      expect(parentOf(byName.get("id_token verify")!)).toBe(idOf(rpc));
      expect(parentOf(byName.get("jwks fetch")!)).toBe(idOf(byName.get("id_token verify")!));
      expect(parentOf(byName.get("db read_signin")!)).toBe(idOf(rpc));
      expect(parentOf(byName.get("db commit_signin")!)).toBe(idOf(rpc));
      expect(byName.get("db read_signin")!.attributes["db.system.name"]).toBe("sqlite");
      for (const s of spans) expect(s.status.code).not.toBe(SpanStatusCode.ERROR);
      // Nothing secret in names or attributes.
      expect(JSON.stringify(spans.map((s) => [s.name, s.attributes]))).not.toContain(idToken.split(".")[1]!);
    });

    it("starts a new trace without traceparent, and marks a refusal with its code; gRPC metadata carries traceparent too", async () => {
      exporter.reset();
      const refused = await restSignin(t.url, { id_token: "x.y.z", provider: "acme" });
      expect(refused.status).toBe(400);
      await vi.waitFor(() => expect(exporter.getFinishedSpans().map((s) => s.name)).toContain(RPC));
      const rpc = exporter.getFinishedSpans().find((s) => s.name === RPC)!;
      expect(rpc.parentSpanContext).toBeUndefined();
      expect(rpc.status).toEqual({ code: SpanStatusCode.ERROR, message: "id_token_malformed" });
      expect(exporter.getFinishedSpans().find((s) => s.name === "id_token verify")!.status).toEqual({
        code: SpanStatusCode.ERROR,
        message: "id_token_malformed",
      });

      exporter.reset();
      const parent = traceparent();
      const client = new grpc.Client(grpcTarget(t.url), grpc.credentials.createInsecure());
      try {
        const metadata = new grpc.Metadata();
        metadata.set("traceparent", parent.header);
        const { idToken, nonce } = await op.obtainIdToken({ sub: uniqueSub("traced-grpc") });
        expect("response" in (await grpcSignin(client, { idToken, provider: "acme", nonce }, metadata, null))).toBe(
          true,
        );
      } finally {
        client.close();
      }
      await vi.waitFor(() => expect(exporter.getFinishedSpans().map((s) => s.name)).toContain(RPC));
      const grpcRpc = exporter.getFinishedSpans().find((s) => s.name === RPC)!;
      expect(grpcRpc.spanContext().traceId).toBe(parent.traceId);
      expect(grpcRpc.attributes["identity.protocol"]).toBe("grpc");
      // The keys were cached by the first sign-in: no fetch this time.
      expect(exporter.getFinishedSpans().map((s) => s.name)).not.toContain("jwks fetch");
    });

    it("lets browsers send traceparent (CORS preflight)", async () => {
      const res = await fetch(`${t.url}/auth/id-token/signin`, {
        method: "OPTIONS",
        headers: {
          origin: "https://app.example",
          "access-control-request-method": "POST",
          "access-control-request-headers": "content-type, traceparent, tracestate",
        },
      });
      expect(res.status).toBe(204);
      const allowed = (res.headers.get("access-control-allow-headers") ?? "").split(/,\s*/);
      expect(allowed).toEqual(expect.arrayContaining(["traceparent", "tracestate"]));
    });
  });
});
