import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import type { JSONWebKeySet } from "jose";

import { startTestOidcProvider } from "./oidc-provider.ts";
import type { TestOidcProvider } from "./oidc-provider.ts";

async function fetchJwks(jwksUri: string): Promise<JSONWebKeySet> {
  const res = await fetch(jwksUri);
  expect(res.status).toBe(200);
  return (await res.json()) as JSONWebKeySet;
}

describe("test OIDC provider harness", () => {
  let op: TestOidcProvider;

  beforeAll(async () => {
    op = await startTestOidcProvider({ clientId: "harness-client" });
  });

  afterAll(async () => {
    await op?.close();
  });

  let firstToken = "";
  let firstKid: string | undefined;
  let jwksBeforeRotation: JSONWebKeySet = { keys: [] };

  it("listens on loopback and publishes discovery metadata", async () => {
    expect(op.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(op.clientId).toBe("harness-client");
    const res = await fetch(`${op.issuer}/.well-known/openid-configuration`);
    const metadata = (await res.json()) as Record<string, unknown>;
    expect(metadata["issuer"]).toBe(op.issuer);
    expect(metadata["jwks_uri"]).toBe(op.jwksUri);
  });

  it("issues a genuine ID token through the authorization-code flow", async () => {
    const { idToken, nonce } = await op.obtainIdToken({
      sub: "alice",
      email: "alice@example.org",
      nonce: "nonce-alice-1",
    });
    expect(nonce).toBe("nonce-alice-1");

    const { payload, protectedHeader } = await jwtVerify(idToken, createRemoteJWKSet(new URL(op.jwksUri)), {
      issuer: op.issuer,
      audience: op.clientId,
      algorithms: ["RS256"],
    });
    expect(protectedHeader.alg).toBe("RS256");
    expect(protectedHeader.kid).toBeTypeOf("string");
    expect(payload.iss).toBe(op.issuer);
    expect(payload.aud).toBe(op.clientId);
    expect(payload.sub).toBe("alice");
    expect(payload["nonce"]).toBe("nonce-alice-1");
    expect(payload["email"]).toBe("alice@example.org");
    expect(payload["email_verified"]).toBe(true);
    expect(payload["name"]).toBe("alice");

    firstToken = idToken;
    firstKid = protectedHeader.kid;
    jwksBeforeRotation = await fetchJwks(op.jwksUri);
    expect(jwksBeforeRotation.keys.map((k) => k.kid)).toContain(firstKid);
    // Only public key material is published.
    for (const key of jwksBeforeRotation.keys) expect(key.d).toBeUndefined();
  });

  it("honours emailVerified, generates a nonce when none is given, and omits email on null", async () => {
    const bob = await op.obtainIdToken({ sub: "bob", emailVerified: false });
    expect(bob.nonce).toMatch(/.{16,}/);
    const { payload } = await jwtVerify(bob.idToken, createRemoteJWKSet(new URL(op.jwksUri)), {
      issuer: op.issuer,
      audience: op.clientId,
    });
    expect(payload.sub).toBe("bob");
    expect(payload["nonce"]).toBe(bob.nonce);
    expect(payload["email"]).toBe("bob@example.com");
    expect(payload["email_verified"]).toBe(false);

    const carol = await op.obtainIdToken({ sub: "carol", email: null });
    const decoded = await jwtVerify(carol.idToken, createRemoteJWKSet(new URL(op.jwksUri)));
    expect(decoded.payload.sub).toBe("carol");
    expect(decoded.payload["email"]).toBeUndefined();
    expect(decoded.payload["email_verified"]).toBeUndefined();
  });

  it("rotates the signing key without a restart", async () => {
    const issuerBefore = op.issuer;
    await op.rotateKeys();
    expect(op.issuer).toBe(issuerBefore);

    const { idToken } = await op.obtainIdToken({ sub: "alice", nonce: "nonce-alice-2" });
    const newKid = decodeProtectedHeader(idToken).kid;
    expect(newKid).toBeTypeOf("string");
    expect(newKid).not.toBe(firstKid);
    expect(jwksBeforeRotation.keys.map((k) => k.kid)).not.toContain(newKid);

    const freshJwks = createRemoteJWKSet(new URL(op.jwksUri));
    const { payload, protectedHeader } = await jwtVerify(idToken, freshJwks, {
      issuer: op.issuer,
      audience: op.clientId,
      algorithms: ["RS256"],
    });
    expect(protectedHeader.kid).toBe(newKid);
    expect(payload.sub).toBe("alice");
    expect(payload["nonce"]).toBe("nonce-alice-2");
    expect(payload["email"]).toBe("alice@example.com");

    // The previous key is still published, so the pre-rotation token keeps verifying.
    const jwksAfter = await fetchJwks(op.jwksUri);
    expect(jwksAfter.keys.map((k) => k.kid)).toEqual(expect.arrayContaining([newKid, firstKid]));
    const previous = jwtVerify(firstToken, freshJwks, { issuer: op.issuer, audience: op.clientId });
    await expect(previous).resolves.toMatchObject({
      protectedHeader: { kid: firstKid },
      payload: { sub: "alice", nonce: "nonce-alice-1" },
    });
  });

  it("close() stops the server (idempotently)", async () => {
    await op.close();
    await op.close();
    await expect(fetch(`${op.issuer}/.well-known/openid-configuration`)).rejects.toThrow();
    await expect(op.obtainIdToken({ sub: "alice" })).rejects.toThrow(/closed/);
  });
});
