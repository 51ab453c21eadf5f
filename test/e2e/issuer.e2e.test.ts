/**
 * One issuer: our tokens' `iss`, the discovery document, the JWKS URL and the dev
 * issuer's URL come from one value. Regression: without tokens.issuer and server.public_url,
 * tokens said `http://localhost:PORT` while discovery said `http://127.0.0.1:PORT`, so a verifier
 * fed the discovered issuer (the README's jose snippet) refused every token.
 */
import { createRemoteJWKSet, decodeJwt, jwtVerify } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { freePort, startServiceProcess, type ServiceProcess } from "../support/service-process.ts";
import { devIdToken, restSignin, uniqueSub } from "../support/signin-e2e.ts";

/** What another service does: discover, then verify a fresh access token with the remote JWKS. */
async function verifyWithDiscovery(url: string): Promise<{ issuer: string; jwksUri: string }> {
  const res = await fetch(`${url}/.well-known/openid-configuration`);
  expect(res.status).toBe(200);
  const doc = (await res.json()) as Record<string, string>;
  // Only what is served: the OAuth endpoints, no ID-token claims or authorization endpoint.
  expect(Object.keys(doc).sort()).toEqual([
    "grant_types_supported",
    "introspection_endpoint",
    "introspection_endpoint_auth_methods_supported",
    "issuer",
    "jwks_uri",
    "response_types_supported",
    "revocation_endpoint",
    "revocation_endpoint_auth_methods_supported",
    "token_endpoint",
    "token_endpoint_auth_methods_supported",
    "token_endpoint_auth_signing_alg_values_supported",
  ]);
  expect(doc["token_endpoint"]).toBe(`${new URL(doc["jwks_uri"]!).origin}/oauth2/token`);

  const idToken = await devIdToken(url, uniqueSub("issuer"));
  const signin = await restSignin(url, { id_token: idToken, provider: "dev" });
  expect(signin.status).toBe(200);
  const accessToken = String(signin.body["access_token"]);
  const { payload } = await jwtVerify(accessToken, createRemoteJWKSet(new URL(doc["jwks_uri"]!)), {
    issuer: doc["issuer"]!,
    audience: "identity",
    algorithms: ["ES256"],
    typ: "at+jwt",
  });
  expect(payload.sub).toBe(signin.body["user_id"]);

  // The dev issuer lives under the same base URL and says so in its own discovery.
  const dev = (await (await fetch(`${url}/dev/oidc/.well-known/openid-configuration`)).json()) as Record<
    string,
    string
  >;
  expect(decodeJwt(idToken).iss).toBe(dev["issuer"]);
  expect(dev["issuer"]).toBe(`${new URL(doc["jwks_uri"]!).origin}/dev/oidc`);
  await jwtVerify(idToken, createRemoteJWKSet(new URL(dev["jwks_uri"]!)), {
    issuer: dev["issuer"]!,
    audience: "dev-client",
  });
  return { issuer: doc["issuer"]!, jwksUri: doc["jwks_uri"]! };
}

describe("one issuer", () => {
  let proc: ServiceProcess | undefined;
  let t: TestApp | undefined;
  afterEach(async () => {
    await proc?.stop();
    await t?.close();
    proc = undefined;
    t = undefined;
  });

  it("dev mode without tokens.issuer or server.public_url: the discovered issuer verifies a fresh access token", async () => {
    proc = await startServiceProcess({ config: {}, args: ["--dev"] });
    const { issuer, jwksUri } = await verifyWithDiscovery(proc.url);
    expect(issuer).toBe(proc.url);
    expect(jwksUri).toBe(`${proc.url}/.well-known/jwks.json`);
  });

  it("with server.public_url configured: issuer, JWKS URL and dev issuer are under it", async () => {
    const port = await freePort();
    const publicUrl = `http://localhost:${port}`;
    const lines: string[] = [];
    t = await startTestApp({
      config: { dev: true, "server.port": port, "server.public_url": `${publicUrl}/`, "tokens.issuer": undefined },
      logger: createLogger({ level: "info", write: (l) => lines.push(l) }),
    });
    const { issuer, jwksUri } = await verifyWithDiscovery(publicUrl);
    expect(issuer).toBe(publicUrl);
    expect(jwksUri).toBe(`${publicUrl}/.well-known/jwks.json`);
    expect(lines.join("")).not.toContain("PUBLIC_URL IS NOT SET");
  });

  it("production mode without server.public_url warns loudly at start", async () => {
    const lines: string[] = [];
    t = await startTestApp({
      config: { "tokens.issuer": undefined },
      logger: createLogger({ level: "info", write: (l) => lines.push(l) }),
    });
    const warning = lines
      .map((l) => JSON.parse(l) as { level: string; msg: string })
      .find((l) => l.msg.includes("PUBLIC_URL IS NOT SET"));
    expect(warning?.level).toBe("warn");
    // Still one value: discovery names the listening address as issuer and JWKS base alike.
    const doc = (await (await fetch(`${t.url}/.well-known/openid-configuration`)).json()) as Record<string, string>;
    expect(doc).toMatchObject({
      issuer: t.url,
      jwks_uri: `${t.url}/.well-known/jwks.json`,
      token_endpoint: `${t.url}/oauth2/token`,
    });
  });
});
