/**
 * An ID token without `jti` (Entra puts `uti`, Apple none) must not sign in a
 * second time under another spelling. Two spellings of one signature verify: the last base64url
 * character's unused low bits are ignored by decoders, and an ECDSA signature (r, s) is also valid
 * as (r, n − s). The regression: the replay marker hashed the whole token string, so either
 * re-spelling answered 200 with a new session. Checked for RS256 and ES256, over REST and gRPC.
 */
import { createHash } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import {
  createTokenSigner,
  grpcSignin,
  grpcTarget,
  metadataToHeaders,
  restSignin,
  uniqueSub,
} from "../support/signin-e2e.ts";

const ISSUER = "https://nojti.example";
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/** The order of P-256 (ES256 signatures are r || s, 32 bytes each). */
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

/**
 * The token with its signature's last character re-spelled in the bits decoders ignore: a
 * signature of `bytes` bytes takes ceil(8·bytes / 6) characters, the last one carrying
 * 6·chars − 8·bytes unused low bits (4 for both a 256-byte RS256 and a 64-byte ES256 signature).
 */
function flipUnusedBits(token: string): string {
  const [h, p, sig] = token.split(".") as [string, string, string];
  const bytes = Buffer.from(sig, "base64url").length;
  const unused = sig.length * 6 - bytes * 8;
  expect(unused).toBeGreaterThan(0);
  const last = ALPHABET.indexOf(sig.at(-1)!);
  const respelled = `${sig.slice(0, -1)}${ALPHABET[last ^ 1]}`;
  // Same bytes, another string.
  expect(Buffer.from(respelled, "base64url").equals(Buffer.from(sig, "base64url"))).toBe(true);
  return `${h}.${p}.${respelled}`;
}

/** The ES256 token with its signature's s replaced by n − s (the other valid signature). */
function negateS(token: string): string {
  const [h, p, sig] = token.split(".") as [string, string, string];
  const raw = Buffer.from(sig, "base64url");
  expect(raw.length).toBe(64);
  const s = BigInt(`0x${raw.subarray(32).toString("hex")}`);
  const other = Buffer.from((P256_N - s).toString(16).padStart(64, "0"), "hex");
  return `${h}.${p}.${Buffer.concat([raw.subarray(0, 32), other]).toString("base64url")}`;
}

describe("replay of a jti-less ID token under another spelling", () => {
  let t: TestApp;
  let grpcClient: grpc.Client;
  const signers: Partial<Record<"RS256" | "ES256", Awaited<ReturnType<typeof createTokenSigner>>>> = {};

  beforeAll(async () => {
    signers.RS256 = await createTokenSigner("RS256");
    signers.ES256 = await createTokenSigner("ES256");
    const keys = { keys: [signers.RS256.publicJwk, signers.ES256.publicJwk] };
    t = await startTestApp({
      config: {
        providers: {
          rs: { issuer: `${ISSUER}/rs`, client_ids: ["app"], jwks_uri: `${ISSUER}/rs/jwks`, algorithms: ["RS256"] },
          es: { issuer: `${ISSUER}/es`, client_ids: ["app"], jwks_uri: `${ISSUER}/es/jwks`, algorithms: ["ES256"] },
        },
      },
      overrides: {
        fetch: (async () =>
          new Response(JSON.stringify(keys), { headers: { "content-type": "application/json" } })) as typeof fetch,
      },
    });
    grpcClient = new grpc.Client(grpcTarget(t.url), grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    grpcClient?.close();
    await t?.close();
  });

  type Protocol = "rest" | "grpc";
  /** Signs in with `token` over `protocol`: 200 / "ok", or the error's stable code. */
  async function signin(protocol: Protocol, token: string, provider: string): Promise<string> {
    if (protocol === "rest") {
      const res = await restSignin(t.url, { id_token: token, provider });
      return res.status === 200 ? "ok" : `${res.status} ${String(res.body["code"])}`;
    }
    const out = await grpcSignin(grpcClient, { idToken: token, provider });
    if ("response" in out) return "ok";
    const reason = findTrailerError(metadataToHeaders(out.error.metadata))?.findDetails(ErrorInfoSchema)[0]?.reason;
    return `${out.error.code} ${reason}`;
  }
  const replayed: Record<Protocol, string> = {
    rest: "401 id_token_replayed",
    grpc: `${grpc.status.UNAUTHENTICATED} id_token_replayed`,
  };

  const cases = [
    { alg: "RS256", provider: "rs", respell: flipUnusedBits, how: "unused bits of the last character" },
    { alg: "ES256", provider: "es", respell: flipUnusedBits, how: "unused bits of the last character" },
    { alg: "ES256", provider: "es", respell: negateS, how: "s → n − s" },
    {
      alg: "ES256",
      provider: "es",
      respell: (tok: string) => flipUnusedBits(negateS(tok)),
      how: "s → n − s, then the unused bits",
    },
  ] as const;
  const orders: [Protocol, Protocol][] = [
    ["rest", "grpc"],
    ["grpc", "rest"],
    ["rest", "rest"],
    ["grpc", "grpc"],
  ];

  for (const c of cases) {
    for (const [first, second] of orders) {
      it(`${c.alg}, ${c.how}: used over ${first}, re-spelled over ${second} is id_token_replayed and opens no session`, async () => {
        const sub = uniqueSub(`respell-${c.alg}`);
        const iss = `${ISSUER}/${c.provider}`;
        const token = await signers[c.alg]!.sign({ iss, aud: "app", sub });
        const respelled = c.respell(token);
        expect(respelled).not.toBe(token);
        expect(await signin(first, token, c.provider)).toBe("ok");
        expect(await signin(second, respelled, c.provider)).toBe(replayed[second]);
        // The original spelling stays refused too.
        expect(await signin(second, token, c.provider)).toBe(replayed[second]);

        const db = t.app.database.client;
        const identity = await db.identity.findFirstOrThrow({ where: { subject: sub } });
        expect(await db.session.count({ where: { userId: identity.userId } })).toBe(1);
        // One marker, keyed by what the signature covers (issuer + header.payload), not the spelling.
        const signingInput = token.slice(0, token.lastIndexOf("."));
        const id = createHash("sha256").update(`${iss}\n${signingInput}`).digest("hex");
        expect(await db.usedIdToken.count({ where: { key: { endsWith: `.sig:${id}` } } })).toBe(1);
      });
    }
  }

  it("the re-spelled token is accepted when it comes first (it is a valid token), and the original is then the replay", async () => {
    const sub = uniqueSub("respell-first");
    const token = await signers.ES256!.sign({ iss: `${ISSUER}/es`, aud: "app", sub });
    expect(await signin("rest", negateS(token), "es")).toBe("ok");
    expect(await signin("grpc", token, "es")).toBe(replayed.grpc);
  });
});
