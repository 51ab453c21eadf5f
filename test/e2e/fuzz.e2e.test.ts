/**
 * Property-based fuzzing of every public RPC against a real server (dev mode, every database
 * kind): arbitrary messages, mangled protobuf, arbitrary JSON, odd headers and path parameters,
 * over REST, Connect (plain and through connect-es), gRPC (plain and through connect-es) and
 * gRPC-Web, without credentials, with a user's access token, with the admin key and with garbage.
 *
 * For every request: an answer within the deadline (no hang), never a server error (5xx, or a
 * gRPC status of unknown/internal/unimplemented/data_loss; a 503 only with a documented code), no
 * row written in any table by a refused call except audit rows, and /healthz answers afterwards;
 * at the end, no stored text anywhere holds a control character.
 *
 * Bounded in time for CI (FUZZ_SECONDS per database kind, default 6); for a longer hunt:
 *   FUZZ_SECONDS=300 npx vitest run test/e2e/fuzz.e2e.test.ts
 * FUZZ_RUNS caps the number of requests, FUZZ_SEED replays a run (the seed is in the failure).
 */
import { gzipSync } from "node:zlib";
import {
  create,
  type DescField,
  type DescMessage,
  type DescMethod,
  ScalarType,
  toBinary,
  toJsonString,
} from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SERVICE_MODULES } from "../../src/app/services.ts";
import { restRoutesFrom } from "../../src/rpc/rest-routes.ts";
import { mintAdminKey } from "../../src/tokens/admin-keys.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { testDatabaseKinds } from "../support/databases.ts";
import { envelope, RawRpc, restCall, type RpcOutcome } from "../support/raw-rpc.ts";
import { createRowCounter, type RowCounter } from "../support/schema-introspection.ts";
import { uniqueSub } from "../support/signin-e2e.ts";

const SECONDS = Number(process.env["FUZZ_SECONDS"] ?? "6");
const RUNS = Number(process.env["FUZZ_RUNS"] ?? "1000000");
const SEED = process.env["FUZZ_SEED"] === undefined ? undefined : Number(process.env["FUZZ_SEED"]);
/** Per request: longer than any honest answer on a loaded CI box, far shorter than a hang. */
const REQUEST_TIMEOUT_MS = 5000;

/** Every API service the server registers (app/services.ts), so a new one is fuzzed without a change here. */
const SERVICES = SERVICE_MODULES.map((m) => m.service);
const METHODS: DescMethod[] = SERVICES.flatMap((s) => s.methods);
const ROUTES = restRoutesFrom(SERVICES);
const ADMIN = mintAdminKey();
/** Codes a 503 may carry: the documented ones (README, "Errors"). */
const DOCUMENTED_503 = new Set(["unavailable", "provider_unavailable"]);
/** Calls that, when they succeed, may spend the fuzzer's credentials (new ones are minted). */
const SPENDS_CREDENTIALS = new Set([
  "SignOut",
  "RevokeSession",
  "ChangePassword",
  "DisableUser",
  "LockUser",
  "UnlinkIdentity",
  "ForcePasswordChange",
  "EnrollTotp",
  "ConfirmTotp",
]);

interface Credentials {
  accessToken: string;
  refreshToken: string;
  userId: string;
  sessionId: string;
}

/** What the generators draw known-good values from, so that handlers get past their first check. */
interface Known {
  credentials: Credentials;
}

type Protocol = "rest" | "connect-proto" | "connect-json" | "grpc" | "grpc-json" | "grpc-web" | "grpc-web-json";
type Variant = "plain" | "deadline" | "gzip";
type Body =
  | { kind: "message"; init: Record<string, unknown> }
  | { kind: "bytes"; bytes: Uint8Array }
  | { kind: "mutated"; init: Record<string, unknown>; at: number; value: number; cut: number }
  | { kind: "json"; json: unknown };

interface FuzzRequest {
  method: DescMethod;
  protocol: Protocol;
  variant: Variant;
  /** The deadline header's value in milliseconds (gRPC: with the unit `m`), when variant is "deadline". */
  deadline: string;
  credential: "none" | "access" | "admin" | "garbage";
  garbage: string;
  headers: Record<string, string>;
  body: Body;
  /** REST only: a raw segment in place of each path variable (else the message's value). */
  rawSegments: string[] | null;
  extraQuery: Array<[string, string]>;
  /** Connect and gRPC-Web: HTTP/2 or HTTP/1.1 (gRPC is HTTP/2 only; REST goes over HTTP/1.1). */
  via: "h2" | "h1";
  /** Now and then a Content-Type that does not go with the protocol. */
  contentType: string | null;
  /** gRPC and gRPC-Web: now and then the message without its envelope. */
  unframed: boolean;
}

/** Text that reaches handlers: anything at all, and values that look right. */
function textArb(known: () => Known): fc.Arbitrary<string> {
  return fc.oneof(
    fc.string({ unit: "binary", maxLength: 40 }),
    fc.string({ unit: "grapheme-ascii", maxLength: 20 }),
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        "",
        "\u0000",
        "a\u0000b",
        "\r\n",
        "dev",
        "totp",
        "recovery_code",
        "active",
        "disabled",
        "locked",
        "2030-01-01T00:00:00Z",
        "usr_",
        "ses_",
        "x".repeat(3000),
      ),
    },
    {
      weight: 2,
      arbitrary: fc.constantFrom("access", "refresh", "user", "session").map((k) => {
        const c = known().credentials;
        return k === "access"
          ? c.accessToken
          : k === "refresh"
            ? c.refreshToken
            : k === "user"
              ? c.userId
              : c.sessionId;
      }),
    },
  );
}

function scalarArb(field: DescField & { scalar: ScalarType }, text: fc.Arbitrary<string>): fc.Arbitrary<unknown> {
  switch (field.scalar) {
    case ScalarType.STRING:
      return text;
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 32 });
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return fc.double();
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return fc.nat({ max: 2 ** 32 - 1 });
    default:
      return fc.oneof(
        { weight: 3, arbitrary: fc.integer({ min: 0, max: 50 }) },
        { weight: 1, arbitrary: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) },
      );
  }
}

/** An init object for `create(desc, init)`: any subset of the fields, any values. */
function messageArb(desc: DescMessage, text: fc.Arbitrary<string>, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const fields: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of desc.fields) {
    if (field.oneof !== undefined) continue;
    switch (field.fieldKind) {
      case "scalar":
        fields[field.localName] = scalarArb(field, text);
        break;
      case "enum":
        fields[field.localName] = fc.integer({ min: -1, max: 8 });
        break;
      case "list":
        if (field.listKind === "scalar")
          fields[field.localName] = fc.array(scalarArb(field as never, text), { maxLength: 3 });
        else if (field.listKind === "message" && depth < 2)
          fields[field.localName] = fc.array(messageArb(field.message, text, depth + 1), { maxLength: 2 });
        break;
      case "message":
        if (depth < 2) fields[field.localName] = messageArb(field.message, text, depth + 1);
        break;
      default:
        break;
    }
  }
  return fc.record(fields, { requiredKeys: [] });
}

function requestArb(known: () => Known): fc.Arbitrary<FuzzRequest> {
  const text = textArb(known);
  // What HTTP lets through in a header value: visible ASCII, space, tab and obs-text (Latin-1).
  const headerChar = fc
    .oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.constant(0x09), fc.integer({ min: 0x80, max: 0xff }))
    .map((c) => String.fromCharCode(c));
  const headerText = fc.string({ unit: headerChar, maxLength: 60 }).map((s) => s.trim());
  const headers = fc.record(
    {
      "x-device-id": headerText,
      "user-agent": headerText,
      "x-request-id": headerText,
      "accept-language": headerText,
      "x-forwarded-for": fc.oneof(
        headerText,
        fc.constantFrom("203.0.113.7", "unknown, 10.0.0.1", "[2001:db8::1]:443", "1.2.3.4:5, ::1"),
      ),
    },
    { requiredKeys: [] },
  );
  return fc.constantFrom(...METHODS).chain((method) =>
    fc.record({
      method: fc.constant(method),
      protocol: fc.constantFrom<Protocol>(
        "rest",
        "connect-proto",
        "connect-json",
        "grpc",
        "grpc-json",
        "grpc-web",
        "grpc-web-json",
      ),
      deadline: fc.oneof(
        { weight: 4, arbitrary: fc.constant("4000") },
        { weight: 1, arbitrary: fc.oneof(headerText, fc.constantFrom("0", "1", "-1", "99999999999", "1e3")) },
      ),
      variant: fc.constantFrom<Variant>("plain", "deadline", "gzip"),
      credential: fc.constantFrom("none", "access", "admin", "garbage"),
      garbage: headerText,
      headers,
      body: fc.oneof(
        { weight: 4, arbitrary: messageArb(method.input, text).map((init): Body => ({ kind: "message", init })) },
        {
          weight: 2,
          arbitrary: fc
            .record({ init: messageArb(method.input, text), at: fc.nat(), value: fc.nat({ max: 255 }), cut: fc.nat() })
            .map((m): Body => ({ kind: "mutated", ...m })),
        },
        { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes): Body => ({ kind: "bytes", bytes })) },
        { weight: 1, arbitrary: fc.json().map((json): Body => ({ kind: "json", json: JSON.parse(json) })) },
      ),
      rawSegments: fc.option(
        fc.array(fc.oneof(headerText, fc.constantFrom("%", "%zz", "..", "%2F", "%00", "%C3%28")), {
          minLength: 3,
          maxLength: 3,
        }),
        { freq: 3 },
      ),
      extraQuery: fc.option(
        fc.array(fc.tuple(fc.constantFrom("limit", "status", "force", "clear", "nope", "user_id"), headerText), {
          minLength: 1,
          maxLength: 2,
        }),
        { freq: 4, nil: [] },
      ),
      via: fc.constantFrom<"h2" | "h1">("h2", "h1"),
      contentType: fc.option(
        fc.oneof(
          headerText,
          fc.constantFrom(
            "text/plain",
            "application/json; charset=utf-8",
            "application/json;charset=latin1",
            "application/proto; x=1",
            "application/grpc+proto",
            "application/grpc+json",
            "application/grpc-web-text",
            "application/connect+proto",
            "application/x-protobuf",
            "multipart/form-data",
          ),
        ),
        { freq: 10 },
      ),
      unframed: fc.nat({ max: 9 }).map((n) => n === 0),
    }),
  );
}

/** The message of a request (an empty one if the generated init does not fit the schema). */
function messageOf(method: DescMethod, init: Record<string, unknown>) {
  try {
    return create(method.input, init as never);
  } catch {
    return create(method.input);
  }
}

function binaryOf(method: DescMethod, body: Body): Uint8Array {
  switch (body.kind) {
    case "bytes":
      return body.bytes;
    case "json":
      return Buffer.from(JSON.stringify(body.json));
    case "message":
      return toBinary(method.input, messageOf(method, body.init));
    case "mutated": {
      const bytes = Buffer.from(toBinary(method.input, messageOf(method, body.init)));
      if (bytes.length === 0) return Uint8Array.from([body.value]);
      bytes[body.at % bytes.length] = body.value;
      return bytes.subarray(0, bytes.length - (body.cut % bytes.length));
    }
  }
}

function jsonTextOf(method: DescMethod, body: Body): string {
  switch (body.kind) {
    case "json":
      return JSON.stringify(body.json);
    case "bytes":
      return Buffer.from(body.bytes).toString("latin1");
    case "message":
      return toJsonString(method.input, messageOf(method, body.init), { useProtoFieldName: true });
    case "mutated": {
      const text = toJsonString(method.input, messageOf(method, body.init), { useProtoFieldName: true });
      const at = body.at % (text.length + 1);
      return text.slice(0, at) + String.fromCharCode(body.value) + text.slice(at + 1);
    }
  }
}

/** Percent-encodes every byte but the unreserved ones (lone surrogates included, unlike encodeURIComponent). */
function pct(s: string): string {
  return [...Buffer.from(s, "utf8")]
    .map((b) =>
      /[A-Za-z0-9._~-]/.test(String.fromCharCode(b))
        ? String.fromCharCode(b)
        : `%${b.toString(16).padStart(2, "0").toUpperCase()}`,
    )
    .join("");
}

function credentialHeaders(r: FuzzRequest, known: Known): Record<string, string> {
  switch (r.credential) {
    case "none":
      return {};
    case "access":
      return { authorization: `Bearer ${known.credentials.accessToken}` };
    case "admin":
      return { "x-admin-key": ADMIN.key };
    case "garbage":
      return r.garbage.length % 2 === 0
        ? { authorization: `Bearer ${r.garbage}` }
        : { "x-admin-key": r.garbage, authorization: r.garbage };
  }
}

async function send(raw: RawRpc, url: string, r: FuzzRequest, known: Known): Promise<RpcOutcome> {
  const odd: Record<string, string> = r.contentType === null ? {} : { "content-type": r.contentType };
  const headers = { ...r.headers, ...credentialHeaders(r, known) };
  const path = `/${r.method.parent.typeName}/${r.method.name}`;
  const gzip = r.variant === "gzip";
  switch (r.protocol) {
    case "rest": {
      const route = ROUTES.find((x) => x.method === r.method)!;
      const message =
        r.body.kind === "message"
          ? (JSON.parse(
              toJsonString(r.method.input, messageOf(r.method, r.body.init), { useProtoFieldName: true }),
            ) as Record<string, unknown>)
          : {};
      let i = 0;
      const used = new Set<string>();
      const target = route.template.replace(/\{([a-z_]+)[^}]*\}/g, (_m, name: string) => {
        used.add(name);
        const rawSegment = r.rawSegments?.[i++];
        return rawSegment !== undefined ? rawSegment.replace(/[/?#]/g, "") || "x" : pct(String(message[name] ?? "x"));
      });
      const query = new URLSearchParams(r.extraQuery);
      if (route.body === "")
        for (const [k, v] of Object.entries(message))
          if (!used.has(k) && typeof v !== "object") query.append(k, String(v));
      const q = query.toString();
      return restCall(
        url,
        route.httpMethod,
        q === "" ? target : `${target}?${q}`,
        route.body === "" ? undefined : jsonTextOf(r.method, r.body),
        { ...headers, ...odd },
        REQUEST_TIMEOUT_MS,
      );
    }
    case "connect-proto":
    case "connect-json": {
      const json = r.protocol === "connect-json";
      const body = json ? Buffer.from(jsonTextOf(r.method, r.body)) : binaryOf(r.method, r.body);
      return raw.connect(
        path,
        gzip ? gzipSync(body) : body,
        {
          ...headers,
          "content-type": json ? "application/json" : "application/proto",
          ...(gzip ? { "content-encoding": "gzip" } : {}),
          ...(r.variant === "deadline" ? { "connect-timeout-ms": r.deadline } : {}),
          ...odd,
        },
        r.via,
      );
    }
    case "grpc":
    case "grpc-json":
    case "grpc-web":
    case "grpc-web-json": {
      const json = r.protocol.endsWith("json");
      const message = json ? Buffer.from(jsonTextOf(r.method, r.body)) : binaryOf(r.method, r.body);
      const frame = r.unframed ? message : gzip ? envelope(gzipSync(message), 1) : envelope(message);
      const web = r.protocol.startsWith("grpc-web");
      const extra = {
        ...headers,
        ...(json ? { "content-type": web ? "application/grpc-web+json" : "application/grpc+json" } : {}),
        ...(gzip ? { "grpc-encoding": "gzip" } : {}),
        ...(r.variant === "deadline" ? { "grpc-timeout": `${r.deadline}m` } : {}),
        ...odd,
      };
      return web ? raw.grpcWeb(path, frame, extra, r.via) : raw.grpc(path, frame, extra);
    }
  }
}

/** REST and Connect by their HTTP status; gRPC and gRPC-Web (always HTTP 200) by their status code. */
function isServerError(o: RpcOutcome): boolean {
  if (o.httpStatus === 503 || (o.httpStatus === 200 && o.code === Code.Unavailable))
    return !DOCUMENTED_503.has(o.reason ?? "");
  if (o.httpStatus !== 200) return o.httpStatus >= 500;
  return (
    o.code === Code.Unknown || o.code === Code.Internal || o.code === Code.Unimplemented || o.code === Code.DataLoss
  );
}

function withoutAudit(rows: Record<string, number>): Record<string, number> {
  const { audit_events: _audit, ...rest } = rows;
  return rest;
}

for (const kind of testDatabaseKinds()) {
  describe(`fuzzing every RPC on ${kind.dialect}`, kind.suiteOptions, () => {
    let t: TestApp;
    let raw: RawRpc;
    let rows: RowCounter;
    const known: Known = { credentials: { accessToken: "", refreshToken: "", userId: "", sessionId: "" } };

    async function freshCredentials(): Promise<Credentials> {
      const json = { "content-type": "application/json" };
      const minted = (await (
        await fetch(`${t.url}/dev/oidc/token`, {
          method: "POST",
          headers: json,
          body: JSON.stringify({ sub: uniqueSub("fuzz") }),
        })
      ).json()) as { id_token: string };
      const res = await fetch(`${t.url}/auth/id-token/signin`, {
        method: "POST",
        headers: json,
        body: JSON.stringify({ id_token: minted.id_token, provider: "dev" }),
      });
      const login = (await res.json()) as Record<string, string>;
      expect(res.status).toBe(200);
      return {
        accessToken: login["access_token"]!,
        refreshToken: login["refresh_token"]!,
        userId: login["user_id"]!,
        sessionId: login["session_id"] ?? "",
      };
    }

    beforeAll(async () => {
      t = await startTestApp({
        kind,
        config: { dev: true, admin: { api_keys: [{ name: "fuzz", sha256: ADMIN.sha256Hex }] } },
      });
      raw = new RawRpc(t.url, REQUEST_TIMEOUT_MS);
      rows = await createRowCounter(t.database.url);
      known.credentials = await freshCredentials();
    });
    afterAll(async () => {
      raw?.close();
      await rows?.close();
      await t?.close();
    });

    it(
      `answers every request within ${REQUEST_TIMEOUT_MS} ms, never with a server error, writes nothing but audit rows when it refuses, and stays healthy`,
      async () => {
        let requests = 0;
        const outcomes = new Set<string>();
        await fc.assert(
          fc.asyncProperty(
            requestArb(() => known),
            async (r) => {
              requests++;
              const before = await rows.count();
              const outcome = await send(raw, t.url, r, known);
              outcomes.add(outcome.code === 0 ? "ok" : (outcome.reason ?? String(outcome.code)));
              const what = `${r.protocol}/${r.variant} ${r.method.parent.name}.${r.method.name} (${r.credential})`;
              // A deadline the client set and the call outran is the client's choice (Connect maps it to 504).
              const outran = r.variant === "deadline" && outcome.code === Code.DeadlineExceeded;
              expect(!outran && isServerError(outcome), `${what} answered ${JSON.stringify(outcome)}`).toBe(false);
              if (outcome.code !== 0) {
                expect(
                  withoutAudit(await rows.count()),
                  `${what} was refused (${outcome.reason}) but wrote rows`,
                ).toEqual(withoutAudit(before));
              } else if (SPENDS_CREDENTIALS.has(r.method.name)) {
                known.credentials = await freshCredentials();
              }
              expect(
                (await fetch(`${t.url}/healthz`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })).status,
                `/healthz after ${what}`,
              ).toBe(200);
            },
          ),
          {
            numRuns: RUNS,
            interruptAfterTimeLimit: SECONDS * 1000,
            markInterruptAsFailure: false,
            ...(SEED === undefined ? {} : { seed: SEED }),
          },
        );
        // Whatever got in, nothing stored holds a control character (they are refused or neutralised).
        expect(await rows.textWithControlCharacters()).toEqual([]);
        // The time bound must not hide a fuzzer that stopped fuzzing or never got past the checks.
        expect(requests).toBeGreaterThan(Math.min(RUNS, 20));
        if (RUNS >= 200)
          expect([...outcomes]).toEqual(
            expect.arrayContaining(["ok", "invalid_request", "access_token_required", "admin_credential_required"]),
          );
      },
      SECONDS * 1000 + 60_000,
    );
  });
}
