/**
 * The protocol comparison of `npm run bench`: the same returning sign-in over REST, Connect
 * (HTTP/1.1, JSON) and gRPC (h2c), driven by h2load (Debian's nghttp2-client, C), so that the
 * load generator is never the bottleneck (the Node gRPC/Connect clients of load.ts saturate their
 * core first). One user's token for all three, sent as a fixed body (to a provider configured to
 * accept a token more than once); success is read from the service's own /metrics (h2load cannot
 * see gRPC trailers).
 */
import { spawnSync } from "node:child_process";
import { create, toBinary } from "@bufbuild/protobuf";
import { SigninWithIdTokenRequestSchema } from "../gen/pb/identity/v1/auth_service_pb.ts";
import { REUSABLE_PROVIDER } from "./service-config.ts";

export type Protocol = "rest" | "connect" | "grpc";

export function h2loadAvailable(): boolean {
  return spawnSync("h2load", ["--version"]).status === 0;
}

/**
 * The request body for `protocol`: JSON, or a gRPC length-prefixed protobuf message. One fixed
 * body is sent again and again, so it names the provider that accepts a token more than once
 * (`allow_token_reuse`, bench/service-config.ts): the rows compare protocols, not replay checks.
 */
export function bodyFor(protocol: Protocol, token: string, deviceId: string): Buffer {
  const provider = REUSABLE_PROVIDER;
  if (protocol !== "grpc") return Buffer.from(JSON.stringify({ id_token: token, provider, device_id: deviceId }));
  const message = toBinary(
    SigninWithIdTokenRequestSchema,
    create(SigninWithIdTokenRequestSchema, { idToken: token, provider, deviceId }),
  );
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  Buffer.from(message).copy(frame, 5);
  return frame;
}

export function h2loadArgs(
  protocol: Protocol,
  url: string,
  bodyFile: string,
  seconds: number,
  connections: number,
): string[] {
  const common = ["-d", bodyFile, "-D", `${Math.round(seconds * 1000)}ms`, "--warm-up-time=1"];
  switch (protocol) {
    case "rest":
      return [
        ...common,
        "--h1",
        "-c",
        String(connections),
        "-H",
        "content-type: application/json",
        `${url}/auth/id-token/signin`,
      ];
    case "connect":
      return [
        ...common,
        "--h1",
        "-c",
        String(connections),
        "-H",
        "content-type: application/json",
        "-H",
        "connect-protocol-version: 1",
        `${url}/identity.v1.AuthService/SigninWithIdToken`,
      ];
    case "grpc":
      // Four connections with eight streams each: how gRPC clients multiplex.
      return [
        ...common,
        "-c",
        "4",
        "-m",
        String(Math.ceil(connections / 4)),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        `${url}/identity.v1.AuthService/SigninWithIdToken`,
      ];
  }
}

/** h2load's summary: requests done and per second, and the mean request time. */
export function parseH2load(out: string): { done: number; rate: number; meanMs: number | null; status2xx: number } {
  const done = Number(/requests: \d+ total, \d+ started, (\d+) done/.exec(out)?.[1] ?? 0);
  const rate = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)?.[1] ?? 0);
  const mean = /time for request:\s+\S+\s+\S+\s+(\S+)/.exec(out)?.[1];
  const status2xx = Number(/status codes: (\d+) 2xx/.exec(out)?.[1] ?? 0);
  const meanMs =
    mean === undefined
      ? null
      : mean.endsWith("ms")
        ? Number(mean.slice(0, -2))
        : mean.endsWith("us")
          ? Number(mean.slice(0, -2)) / 1000
          : Number(mean.slice(0, -1)) * 1000;
  return { done, rate, meanMs, status2xx };
}

/** `identity_rpc_requests_total` for SigninWithIdToken from /metrics, by outcome code. */
export async function signinOutcomes(url: string): Promise<Record<string, number>> {
  // A fresh connection each time: a kept-alive one may have timed out during the phase.
  const text = await (
    await fetch(`${url}/metrics`, { keepalive: false, headers: { connection: "close" } }).catch(() =>
      fetch(`${url}/metrics`),
    )
  ).text();
  const out: Record<string, number> = {};
  // Summed over protocols: identity_rpc_requests_total{method="…",protocol="…",code="…"} n
  const line = /identity_rpc_requests_total\{([^}]*)\} (\d+)/g;
  for (const m of text.matchAll(line)) {
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (labels["method"] !== "identity.v1.AuthService/SigninWithIdToken" || labels["code"] === undefined) continue;
    out[labels["code"]] = (out[labels["code"]] ?? 0) + Number(m[2]);
  }
  return out;
}
