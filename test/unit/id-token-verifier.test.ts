import { createHash } from "node:crypto";
import {
  CompactSign,
  type CryptoKey,
  createLocalJWKSet,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  type JWK,
  SignJWT,
} from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { DomainError, type ErrorCode } from "../../src/core/errors.ts";
import type { Clock } from "../../src/core/clock.ts";
import type { IdTokenVerifier } from "../../src/core/ports/signin.ts";
import { createIdTokenVerifier, type ProviderVerification } from "../../src/tokens/id-token-verifier.ts";

const NOW = new Date("2030-03-01T12:00:00Z");
const NOW_S = Math.floor(NOW.getTime() / 1000);
const clock: Clock = { now: () => new Date(NOW) };

const ISSUER = "https://accounts.example.test";
const CLIENT = "web-client";
const OTHER_ISSUER = "https://login.other.test";

interface KeyPair {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

let rsa: KeyPair; // provider "acme" (ISSUER)
let rsaOther: KeyPair; // provider "other" (OTHER_ISSUER)
let ec: KeyPair; // an ES256 key nobody pins

async function keyPair(alg: "RS256" | "RS384" | "ES256", kid: string): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

beforeAll(async () => {
  [rsa, rsaOther, ec] = await Promise.all([
    keyPair("RS256", "acme-1"),
    keyPair("RS256", "other-1"),
    keyPair("ES256", "ec-1"),
  ]);
});

function provider(overrides: Partial<ProviderVerification> = {}): ProviderVerification {
  return {
    name: "acme",
    signup: "allow",
    linkByEmail: "verified",
    issuer: ISSUER,
    clientIds: [CLIENT],
    trustedAudiences: [],
    algorithms: ["RS256"],
    clockSkewSeconds: 60,
    maxTokenAgeSeconds: null,
    requireNonce: false,
    claimAllowlist: {},
    // Holds the EC public key too, so an ES256 token is refused for its algorithm, not its kid.
    keys: createLocalJWKSet({ keys: [rsa.publicJwk, ec.publicJwk] }),
    ...overrides,
  };
}

function otherProvider(overrides: Partial<ProviderVerification> = {}): ProviderVerification {
  return provider({
    name: "other",
    issuer: OTHER_ISSUER,
    clientIds: ["other-client"],
    keys: createLocalJWKSet({ keys: [rsaOther.publicJwk] }),
    ...overrides,
  });
}

function verifier(providers: ProviderVerification[] = [provider()], maxTokenBytes = 16 * 1024): IdTokenVerifier {
  return createIdTokenVerifier({ providers, clock, maxTokenBytes });
}

/** The identity a token of `claims()` yields under provider "acme". */
const ADA = {
  provider: { name: "acme" },
  issuer: ISSUER,
  subject: "user-123",
  email: "ada@example.com",
  emailVerified: true,
};

/** Claims of a valid token for "acme"; a key set to `undefined` is left out of the token. */
function claims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const all: Record<string, unknown> = {
    iss: ISSUER,
    sub: "user-123",
    aud: CLIENT,
    iat: NOW_S - 60,
    exp: NOW_S + 3600,
    email: "ada@example.com",
    email_verified: true,
    ...overrides,
  };
  return Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined));
}

async function sign(
  payload: Record<string, unknown> = claims(),
  options: { key?: KeyPair; alg?: string; kid?: string | null; typ?: string } = {},
): Promise<string> {
  const key = options.key ?? rsa;
  const kid = options.kid === null ? undefined : (options.kid ?? key.kid);
  return new SignJWT(payload)
    .setProtectedHeader({
      alg: options.alg ?? (key === ec ? "ES256" : "RS256"),
      ...(kid === undefined ? {} : { kid }),
      ...(options.typ === undefined ? {} : { typ: options.typ }),
    })
    .sign(key.privateKey);
}

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  throw new Error("expected the promise to reject, but it resolved");
}

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<DomainError> {
  const e = await rejection(promise);
  expect(e).toBeInstanceOf(DomainError);
  expect((e as DomainError).code).toBe(code);
  return e as DomainError;
}

describe("createIdTokenVerifier", () => {
  describe("a valid token", () => {
    it("yields the identity the token states, under the configured issuer and provider policy", async () => {
      const token = await sign(
        claims({
          name: "Ada Lovelace",
          preferred_username: "ada",
          amr: ["pwd", "mfa", 7],
          acr: "urn:loa:2",
          phone_number: "+15550100",
          phone_number_verified: true,
        }),
      );
      const identity = await verifier().verify(token, { provider: "acme" });
      expect(identity).toEqual({
        provider: { name: "acme", signup: "allow", linkByEmail: "verified" },
        issuer: ISSUER,
        subject: "user-123",
        email: "ada@example.com",
        emailVerified: true,
        name: "Ada Lovelace",
        preferredUsername: "ada",
        phone: "+15550100",
        amr: ["pwd", "mfa"],
        acr: "urn:loa:2",
        // Without a jti the key is issuer + what the signature covers (header.payload), never the
        // token's spelling; remembered until exp plus the skew.
        use: {
          key: expect.stringMatching(
            new RegExp(
              `^\\d{11}\\.sig:${createHash("sha256")
                .update(`${ISSUER}\n${token.slice(0, token.lastIndexOf("."))}`)
                .digest("hex")}$`,
            ),
          ),
          expiresAt: expect.any(Date),
        },
        serverNonce: null,
      });
    });

    it("reports absent optional claims as null / empty, and an unverified phone as null", async () => {
      const token = await sign(claims({ email: undefined, email_verified: undefined, phone_number: "+15550100" }));
      const identity = await verifier().verify(token, { provider: "acme" });
      expect(identity).toMatchObject({
        email: null,
        emailVerified: false,
        name: null,
        preferredUsername: null,
        phone: null,
        amr: [],
        acr: null,
      });
    });

    it.each([
      [true, true],
      ["true", true],
      ["false", false],
      [false, false],
      ["yes", false],
      [1, false],
    ])("reads email_verified %j as %s", async (value, expected) => {
      const token = await sign(claims({ email_verified: value }));
      const identity = await verifier().verify(token, { provider: "acme" });
      expect(identity.emailVerified).toBe(expected);
    });
  });

  describe("time", () => {
    it("rejects an expired token with id_token_expired", async () => {
      const token = await sign(claims({ iat: NOW_S - 7200, exp: NOW_S - 61 }));
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_expired");
    });

    it("accepts a token expired by less than the clock skew", async () => {
      const token = await sign(claims({ iat: NOW_S - 7200, exp: NOW_S - 30 }));
      await expect(verifier().verify(token, { provider: "acme" })).resolves.toMatchObject({
        subject: "user-123",
      });
    });

    it("rejects a token whose nbf is in the future beyond the skew with id_token_not_yet_valid", async () => {
      const token = await sign(claims({ nbf: NOW_S + 120 }));
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_not_yet_valid");
    });

    it("accepts nbf in the future within the skew", async () => {
      const token = await sign(claims({ nbf: NOW_S + 30 }));
      await expect(verifier().verify(token, { provider: "acme" })).resolves.toMatchObject(ADA);
    });

    it("rejects a token issued in the future beyond the skew, even without a maximum age", async () => {
      const token = await sign(claims({ iat: NOW_S + 120, exp: NOW_S + 3600 }));
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_not_yet_valid");
    });

    it("accepts iat in the future within the skew", async () => {
      const token = await sign(claims({ iat: NOW_S + 30 }));
      await expect(verifier().verify(token, { provider: "acme" })).resolves.toMatchObject(ADA);
    });

    it("rejects a token without iat with id_token_claim_invalid", async () => {
      const token = await sign(claims({ iat: undefined }));
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_claim_invalid");
    });

    it("rejects a token without exp with id_token_claim_invalid", async () => {
      const token = await sign(claims({ exp: undefined }));
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_claim_invalid");
    });

    it("rejects a token older than the provider's maximum age with id_token_too_old", async () => {
      const v = verifier([provider({ maxTokenAgeSeconds: 600 })]);
      const old = await sign(claims({ iat: NOW_S - 600 - 61 }));
      await expectCode(v.verify(old, { provider: "acme" }), "id_token_too_old");
      const young = await sign(claims({ iat: NOW_S - 500 }));
      await expect(v.verify(young, { provider: "acme" })).resolves.toMatchObject(ADA);
    });
  });

  describe("issuer and audience", () => {
    it("rejects a token from another issuer with id_token_issuer_mismatch", async () => {
      const token = await sign(claims({ iss: "https://evil.example.test" }));
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_issuer_mismatch");
    });

    it("rejects a token not addressed to our client with id_token_audience_mismatch", async () => {
      const token = await sign(claims({ aud: "someone-else" }));
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_audience_mismatch");
    });

    it("rejects a token also addressed to an untrusted audience, and accepts it once trusted", async () => {
      const token = await sign(claims({ aud: [CLIENT, "analytics"], azp: CLIENT }));
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_audience_mismatch");
      const trusting = verifier([provider({ trustedAudiences: ["analytics"] })]);
      await expect(trusting.verify(token, { provider: "acme" })).resolves.toMatchObject({
        subject: "user-123",
      });
    });

    it("rejects several audiences without azp, even if every audience is trusted", async () => {
      const v = verifier([provider({ trustedAudiences: ["analytics"] })]);
      const withoutAzp = await sign(claims({ aud: [CLIENT, "analytics"] }));
      await expectCode(v.verify(withoutAzp, { provider: "acme" }), "id_token_audience_mismatch");
    });

    it("rejects an azp that is not one of our clients", async () => {
      const single = await sign(claims({ azp: "someone-else" }));
      await expectCode(verifier().verify(single, { provider: "acme" }), "id_token_audience_mismatch");
      // A trusted audience is not an authorized party.
      const v = verifier([provider({ trustedAudiences: ["analytics"] })]);
      const trustedAzp = await sign(claims({ aud: [CLIENT, "analytics"], azp: "analytics" }));
      await expectCode(v.verify(trustedAzp, { provider: "acme" }), "id_token_audience_mismatch");
    });

    it("accepts azp equal to any of our client IDs", async () => {
      const v = verifier([provider({ clientIds: [CLIENT, "ios-client"] })]);
      const token = await sign(claims({ aud: [CLIENT, "ios-client"], azp: "ios-client" }));
      await expect(v.verify(token, { provider: "acme" })).resolves.toMatchObject(ADA);
    });
  });

  describe("subject", () => {
    it.each([
      ["missing", undefined],
      ["empty", ""],
      ["with a newline", "user\n123"],
      ["with a NUL", "user\u0000123"],
      ["with a space", "user 123"],
      ["not a string", 123],
      ["256 characters long", "s".repeat(256)],
    ])("rejects a sub %s with id_token_claim_invalid", async (_, sub) => {
      const token = await sign(claims({ sub }));
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_claim_invalid");
    });

    it("accepts a 255-character sub", async () => {
      const sub = "s".repeat(255);
      const token = await sign(claims({ sub }));
      await expect(verifier().verify(token, { provider: "acme" })).resolves.toMatchObject({ subject: sub });
    });
  });

  describe("header: typ and alg", () => {
    it("rejects typ at+jwt (an access token) with id_token_type_not_allowed", async () => {
      const token = await sign(claims(), { typ: "at+jwt" });
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_type_not_allowed");
    });

    // Regression: a non-string typ (null, or an object with a long `length`) crashed the error
    // message (clip() on a non-string) with a TypeError, surfacing as `internal` instead of a
    // rejection of the token.
    it.each([
      ["null", null],
      ["a number", 1],
      ["an object", { length: 100 }],
    ])("rejects a typ that is %s with id_token_type_not_allowed", async (_, typ) => {
      const token = await new SignJWT(claims())
        .setProtectedHeader({ alg: "RS256", kid: rsa.kid, typ: typ as unknown as string })
        .sign(rsa.privateKey);
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_type_not_allowed");
    });

    it.each(["JWT", "jwt", "application/jwt"])("accepts typ %s", async (typ) => {
      const token = await sign(claims(), { typ });
      await expect(verifier().verify(token, { provider: "acme" })).resolves.toMatchObject(ADA);
    });

    it("accepts a token without typ", async () => {
      const token = await sign(claims());
      expect(decodeProtectedHeader(token)).not.toHaveProperty("typ");
      await expect(verifier().verify(token, { provider: "acme" })).resolves.toMatchObject(ADA);
    });

    it("rejects an ES256 token when the provider pins RS256, though the key set holds the EC key", async () => {
      const token = await sign(claims(), { key: ec });
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_algorithm_not_allowed");
      // The same token is fine for a provider that pins ES256: the refusal came from the pin.
      const es = verifier([provider({ algorithms: ["ES256"] })]);
      await expect(es.verify(token, { provider: "acme" })).resolves.toMatchObject(ADA);
    });

    it("rejects RS384 under the provider's kid when only RS256 is pinned", async () => {
      const rs384 = await keyPair("RS384", rsa.kid);
      const token = await sign(claims(), { key: rs384, alg: "RS384" });
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_algorithm_not_allowed");
    });

    it("rejects an unsigned alg=none token as malformed (a compact JWS needs a signature)", async () => {
      const token = `${b64url({ alg: "none" })}.${b64url(claims())}.`;
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_malformed");
      await expectCode(verifier().verify(token, {}), "id_token_malformed");
    });

    it("rejects alg=none carrying a bogus signature by its algorithm", async () => {
      const token = `${b64url({ alg: "none" })}.${b64url(claims())}.AAAA`;
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_algorithm_not_allowed");
    });

    it("rejects an HS256 token signed with a shared secret", async () => {
      const secret = new TextEncoder().encode("a-shared-secret-that-is-32-bytes!");
      const token = await new SignJWT(claims()).setProtectedHeader({ alg: "HS256", kid: rsa.kid }).sign(secret);
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_algorithm_not_allowed");
    });

    it.each([["HS256"], ["none"], ["NONE"], ["hs512"]])("refuses to build a verifier pinning %s", (alg) => {
      expect(() => verifier([provider({ algorithms: ["RS256", alg] })])).toThrow(/not allowed/);
    });
  });

  describe("signature and keys", () => {
    it("rejects a token whose payload was changed after signing with id_token_signature_invalid", async () => {
      const token = await sign(claims());
      const [header, , signature] = token.split(".");
      const forged = `${header}.${b64url(claims({ sub: "admin" }))}.${signature}`;
      await expectCode(verifier().verify(forged, { provider: "acme" }), "id_token_signature_invalid");
    });

    it("rejects a token whose signature was altered with id_token_signature_invalid", async () => {
      const token = await sign(claims());
      const [header, payload, signature] = token.split(".");
      const flipped = (signature![0] === "A" ? "B" : "A") + signature!.slice(1);
      await expectCode(
        verifier().verify(`${header}.${payload}.${flipped}`, { provider: "acme" }),
        "id_token_signature_invalid",
      );
    });

    it("rejects a token signed by another key under the provider's kid", async () => {
      const token = await sign(claims(), { key: rsaOther, kid: rsa.kid });
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_signature_invalid");
    });

    it("rejects a kid the provider does not publish with id_token_key_not_found", async () => {
      const token = await sign(claims(), { kid: "retired-key" });
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_key_not_found");
    });
  });

  describe("shape", () => {
    it("rejects a token longer than maxTokenBytes with id_token_too_large, before parsing", async () => {
      const token = await sign(claims());
      const exact = verifier([provider()], Buffer.byteLength(token));
      await expect(exact.verify(token, { provider: "acme" })).resolves.toMatchObject(ADA);
      const tight = verifier([provider()], Buffer.byteLength(token) - 1);
      await expectCode(tight.verify(token, { provider: "acme" }), "id_token_too_large");
      // Size is checked first: even garbage that long is "too large", not "malformed".
      await expectCode(verifier([provider()], 512).verify("x".repeat(513), {}), "id_token_too_large");
    });

    it.each([
      ["empty", ""],
      ["one segment", "abc"],
      ["two segments", "abc.def"],
      ["four segments", "a.b.c.d"],
      ["padding", "abc=.def.ghi"],
      ["whitespace", "abc.def.ghi "],
      ["not base64url", "ab+c.def.ghi"],
      ["a header that is not JSON", "abc.def.ghi"],
    ])("rejects %s with id_token_malformed", async (_, token) => {
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_malformed");
    });

    it("rejects a signed token whose payload is not a JSON object with id_token_malformed", async () => {
      // Correctly signed, so it is the payload, not the signature, that is refused.
      const token = await new CompactSign(new TextEncoder().encode("not json"))
        .setProtectedHeader({ alg: "RS256", kid: rsa.kid })
        .sign(rsa.privateKey);
      await expectCode(verifier().verify(token, { provider: "acme" }), "id_token_malformed");
    });
  });

  describe("nonce", () => {
    it("requires the nonce in the request when the provider says so (nonce_required)", async () => {
      const v = verifier([provider({ requireNonce: true })]);
      const token = await sign(claims({ nonce: "n-0S6_WzA2Mj" }));
      await expectCode(v.verify(token, { provider: "acme" }), "nonce_required");
      await expect(v.verify(token, { provider: "acme", nonce: "n-0S6_WzA2Mj" })).resolves.toMatchObject(ADA);
    });

    it("rejects a nonce that differs from the request's with id_token_nonce_mismatch", async () => {
      const token = await sign(claims({ nonce: "n-0S6_WzA2Mj" }));
      await expectCode(
        verifier().verify(token, { provider: "acme", nonce: "n-0S6_WzA2Mk" }),
        "id_token_nonce_mismatch",
      );
      await expectCode(
        verifier().verify(token, { provider: "acme", nonce: "n-0S6_WzA2Mj-longer" }),
        "id_token_nonce_mismatch",
      );
    });

    it("accepts a matching nonce", async () => {
      const token = await sign(claims({ nonce: "n-0S6_WzA2Mj" }));
      await expect(verifier().verify(token, { provider: "acme", nonce: "n-0S6_WzA2Mj" })).resolves.toMatchObject(ADA);
    });

    it("rejects a token without nonce when the request gives one", async () => {
      const token = await sign(claims());
      await expectCode(verifier().verify(token, { provider: "acme", nonce: "abc" }), "id_token_nonce_mismatch");
    });

    it("rejects a non-string nonce claim when the request gives one", async () => {
      const token = await sign(claims({ nonce: ["abc"] }));
      await expectCode(verifier().verify(token, { provider: "acme", nonce: "abc" }), "id_token_nonce_mismatch");
    });
  });

  describe("claim allowlist", () => {
    const v = () => verifier([provider({ claimAllowlist: { hd: ["example.com", "example.org"] } })]);

    it("accepts an allowed value", async () => {
      const token = await sign(claims({ hd: "example.org" }));
      await expect(v().verify(token, { provider: "acme" })).resolves.toMatchObject(ADA);
    });

    it.each([
      ["another value", "evil.com"],
      ["a missing claim", undefined],
      ["an array holding an allowed value", ["example.com"]],
    ])("rejects %s with id_token_claim_not_allowed", async (_, hd) => {
      const token = await sign(claims({ hd }));
      await expectCode(v().verify(token, { provider: "acme" }), "id_token_claim_not_allowed");
    });
  });

  describe("choosing the provider", () => {
    it("rejects an unknown provider name with provider_unknown", async () => {
      const token = await sign(claims());
      await expectCode(verifier().verify(token, { provider: "nope" }), "provider_unknown");
    });

    it("picks the provider by the token's iss when none is named", async () => {
      const v = verifier([provider(), otherProvider()]);
      const fromOther = await sign(claims({ iss: OTHER_ISSUER, aud: "other-client" }), { key: rsaOther });
      await expect(v.verify(fromOther, {})).resolves.toMatchObject({
        provider: { name: "other" },
        issuer: OTHER_ISSUER,
      });
      const fromAcme = await sign(claims());
      await expect(v.verify(fromAcme, {})).resolves.toMatchObject({ provider: { name: "acme" }, issuer: ISSUER });
    });

    it("rejects an iss that matches no provider with issuer_untrusted", async () => {
      const v = verifier([provider(), otherProvider()]);
      const token = await sign(claims({ iss: "https://unknown.example.test" }));
      await expectCode(v.verify(token, {}), "issuer_untrusted");
      const noIss = await sign(claims({ iss: undefined }));
      await expectCode(v.verify(noIss, {}), "issuer_untrusted");
    });

    it("tells providers sharing an issuer apart by aud, and refuses when that is ambiguous", async () => {
      const web = provider({ name: "web", clientIds: ["web-client"] });
      const ios = provider({ name: "ios", clientIds: ["ios-client"] });
      const v = verifier([web, ios]);

      const forIos = await sign(claims({ aud: "ios-client" }));
      await expect(v.verify(forIos, {})).resolves.toMatchObject({ provider: { name: "ios" } });
      const forWeb = await sign(claims({ aud: "web-client" }));
      await expect(v.verify(forWeb, {})).resolves.toMatchObject({ provider: { name: "web" } });

      const forBoth = await sign(claims({ aud: ["web-client", "ios-client"], azp: "web-client" }));
      await expectCode(v.verify(forBoth, {}), "provider_ambiguous");
      const forNeither = await sign(claims({ aud: "tv-client" }));
      await expectCode(v.verify(forNeither, {}), "provider_ambiguous");
      // Naming the provider settles it.
      const named = verifier([
        provider({ name: "web", clientIds: ["web-client"], trustedAudiences: ["ios-client"] }),
        ios,
      ]);
      await expect(named.verify(forBoth, { provider: "web" })).resolves.toMatchObject({ provider: { name: "web" } });
    });

    it("never lets the unverified iss bypass verification: iss of A signed by B's key fails", async () => {
      const v = verifier([provider(), otherProvider()]);
      // B's key with B's kid: A does not publish that kid.
      const bKid = await sign(claims(), { key: rsaOther });
      await expectCode(v.verify(bKid, {}), "id_token_key_not_found");
      // B's key under A's kid: A's key does not verify it.
      const aKid = await sign(claims(), { key: rsaOther, kid: rsa.kid });
      await expectCode(v.verify(aKid, {}), "id_token_signature_invalid");
      // Naming B while the token claims A's issuer: B's rules refuse A's issuer.
      const claimsA = await sign(claims({ aud: "other-client" }), { key: rsaOther });
      await expectCode(v.verify(claimsA, { provider: "other" }), "id_token_issuer_mismatch");
    });
  });
});

describe("keys without kid", () => {
  // Regression: several keys matching a kid-less token made jose raise "multiple matching keys",
  // which was reported as id_token_key_not_found, so such providers could never sign anyone in.
  it("tries every matching key and accepts the one whose signature verifies", async () => {
    const strip = ({ kid: _kid, ...rest }: JWK) => rest;
    const second = await keyPair("RS256", "unused");
    const keys = createLocalJWKSet({ keys: [strip(rsa.publicJwk), strip(second.publicJwk)] });
    const v = createIdTokenVerifier({ providers: [provider({ keys })], clock, maxTokenBytes: 16384 });
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: "RS256", typ: "JWT" })
      .setIssuer(ISSUER)
      .setAudience(CLIENT)
      .setSubject("no-kid")
      .setIssuedAt(NOW_S - 10)
      .setExpirationTime(NOW_S + 600)
      .sign(second.privateKey);
    expect((await v.verify(token, { provider: "acme" })).subject).toBe("no-kid");
    const forged = await new SignJWT({})
      .setProtectedHeader({ alg: "RS256" })
      .setIssuer(ISSUER)
      .setAudience(CLIENT)
      .setSubject("no-kid")
      .setIssuedAt(NOW_S - 10)
      .setExpirationTime(NOW_S + 600)
      .sign(rsaOther.privateKey);
    const error = await v.verify(forged, { provider: "acme" }).catch((e: unknown) => e);
    expect((error as DomainError).code).toBe("id_token_signature_invalid");
  });
});

describe("multi-tenant issuer ({tenantid}, Microsoft Entra's common endpoint)", () => {
  const TEMPLATE = "https://login.microsoftonline.com/{tenantid}/v2.0";
  const T1 = "11111111-2222-3333-4444-555555555555";
  const T2 = "99999999-8888-7777-6666-555555555555";
  const entra = () => provider({ name: "entra", issuer: TEMPLATE, claimAllowlist: { tid: [T1] }, clientIds: [CLIENT] });
  const tenantToken = (tid: string, iss = TEMPLATE.replace("{tenantid}", tid)) => sign(claims({ iss, tid }));

  it("accepts an allowed tenant's token and keys the identity by the token's real issuer", async () => {
    const identity = await verifier([entra()]).verify(await tenantToken(T1), { provider: "entra" });
    expect(identity.issuer).toBe(`https://login.microsoftonline.com/${T1}/v2.0`);
  });

  it("refuses a tenant that is not allowed", async () => {
    await expectCode(
      verifier([entra()]).verify(await tenantToken(T2), { provider: "entra" }),
      "id_token_claim_not_allowed",
    );
  });

  it("refuses an iss that names another tenant than tid, or that does not fit the template", async () => {
    await expectCode(
      verifier([entra()]).verify(await tenantToken(T1, `https://login.microsoftonline.com/${T2}/v2.0`), {
        provider: "entra",
      }),
      "id_token_issuer_mismatch",
    );
    await expectCode(
      verifier([entra()]).verify(await tenantToken(T1, `https://evil.example/${T1}/v2.0`), { provider: "entra" }),
      "id_token_issuer_mismatch",
    );
    await expectCode(
      verifier([entra()]).verify(await sign(claims({ iss: TEMPLATE.replace("{tenantid}", T1) })), {
        provider: "entra",
      }),
      "id_token_claim_invalid",
    );
  });

  it("is chosen by the unverified iss when no provider is named", async () => {
    const identity = await verifier([provider(), entra()]).verify(await tenantToken(T1), {});
    expect(identity.provider.name).toBe("entra");
    await expectCode(
      verifier([entra()]).verify(await tenantToken(T1, "https://login.microsoftonline.com/not-a-guid/v2.0"), {}),
      "issuer_untrusted",
    );
  });
});

describe("hashed nonce (nonce_hashing: sha256, as Sign in with Apple)", () => {
  it("compares the token's nonce with the SHA-256 of the raw nonce the caller sends", async () => {
    const raw = "raw-nonce-4711";
    const hashed = createHash("sha256").update(raw).digest("hex");
    const v = verifier([provider({ nonceHashing: "sha256" })]);
    const token = await sign(claims({ nonce: hashed }));
    await expect(v.verify(token, { provider: "acme", nonce: raw })).resolves.toMatchObject(ADA);
    // The hash itself is not accepted in place of the raw nonce.
    await expectCode(v.verify(token, { provider: "acme", nonce: hashed }), "id_token_nonce_mismatch");
    // Without hashing configured, the raw nonce does not match the hashed claim.
    await expectCode(verifier().verify(token, { provider: "acme", nonce: raw }), "id_token_nonce_mismatch");
  });
});
