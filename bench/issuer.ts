/**
 * The bench OpenID issuer: one RS256 key (jose), served on a loopback port as
 * `/.well-known/openid-configuration` (issuer, jwks_uri) and `/jwks`, and a minter of ID tokens
 * for it. A second key, ES256, is published beside it for tokens minted on the fly by the load
 * driver (`soakMinter`: an ECDSA signature costs the load core ~0.05 ms, an RSA-2048 one ~1 ms). Every server under test (floor, better-auth, this service) verifies the same tokens
 * against this issuer's JWKS with the same claim rules (see CLAIM_RULES).
 */
import { createPrivateKey, createSign, generateKeyPairSync, randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";

/** `aud` of every bench ID token, and the client id every server is configured with. */
export const BENCH_CLIENT_ID = "bench-client";

/** The command line every compared server takes: `--issuer URL --db sqlite|postgresql --data-dir DIR`. */
export function benchServerArgs(): { issuer: string; db: string; dataDir: string | undefined } {
  const { values } = parseArgs({
    options: { issuer: { type: "string" }, db: { type: "string", default: "sqlite" }, "data-dir": { type: "string" } },
  });
  const issuer = values.issuer ?? process.env["BENCH_ISSUER"];
  if (issuer === undefined) throw new Error("--issuer URL is required");
  return { issuer, db: values.db!, dataDir: values["data-dir"] };
}

/** The claim rules every verifier in the bench applies (jose jwtVerify options, plus the JWKS). */
export function claimRules(issuer: string) {
  return {
    issuer,
    audience: BENCH_CLIENT_ID,
    algorithms: ["RS256"],
    clockTolerance: 60,
    requiredClaims: ["sub", "exp", "iat"],
  };
}

export interface MintedToken {
  sub: string;
  token: string;
}

export interface BenchIssuer {
  /** The issuer URL (`iss`), e.g. http://127.0.0.1:41234 */
  issuer: string;
  jwksUri: string;
  /** One ID token for `sub`: iss, aud, sub, email `<sub>@bench.test`, email_verified, iat, exp = now + 1 h, a random jti. */
  mint(sub: string): Promise<string>;
  /** Tokens for many subjects; signing runs on libuv's thread pool, `concurrency` at a time. */
  mintMany(subs: readonly string[], concurrency?: number): Promise<MintedToken[]>;
  /** What the load driver needs to mint ES256 tokens itself (`createSoakMinter`). */
  soakMinter: SoakMinterSpec;
  close(): Promise<void>;
}

/** The ES256 key (PKCS#8 PEM) and claims for minting on the fly, sent to the load driver. */
export interface SoakMinterSpec {
  issuer: string;
  kid: string;
  privateKeyPem: string;
}

/** `kid` of the ES256 key, for the soak's tokens. */
export const SOAK_KID = "bench-es256";

/**
 * A synchronous ES256 ID-token minter (node:crypto, no jose): one token per request, built in
 * autocannon's synchronous request hook, so a soak of any length holds no token list in memory.
 * Same claims as `mint`.
 */
export function createSoakMinter(spec: SoakMinterSpec): (sub: string) => string {
  const header = Buffer.from(JSON.stringify({ alg: "ES256", kid: spec.kid, typ: "JWT" })).toString("base64url");
  const key = createPrivateKey(spec.privateKeyPem);
  return (sub) => {
    const now = Math.floor(Date.now() / 1000);
    const payload = Buffer.from(
      JSON.stringify({
        email: `${sub}@bench.test`,
        email_verified: true,
        iss: spec.issuer,
        aud: BENCH_CLIENT_ID,
        sub,
        iat: now,
        exp: now + 3600,
        jti: randomUUID(),
      }),
    ).toString("base64url");
    const input = `${header}.${payload}`;
    const signature = createSign("sha256").update(input).sign({ key, dsaEncoding: "ieee-p1363" });
    return `${input}.${signature.toString("base64url")}`;
  };
}

export async function startBenchIssuer(options: { host?: string; port?: number } = {}): Promise<BenchIssuer> {
  const { privateKey, publicKey } = await generateKeyPair("RS256", { modulusLength: 2048 });
  const kid = "bench-1";
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" };
  const soak = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const soakJwk: JWK = { ...(await exportJWK(soak.publicKey)), kid: SOAK_KID, alg: "ES256", use: "sig" };
  const jwks = JSON.stringify({ keys: [jwk, soakJwk] });
  let issuer = "";

  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && path === "/.well-known/openid-configuration") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          issuer,
          jwks_uri: `${issuer}/jwks`,
          id_token_signing_alg_values_supported: ["RS256", "ES256"],
          subject_types_supported: ["public"],
          response_types_supported: ["id_token"],
        }),
      );
      return;
    }
    if (req.method === "GET" && path === "/jwks") {
      res.writeHead(200, { "content-type": "application/json", "cache-control": "max-age=3600" });
      res.end(jwks);
      return;
    }
    res.writeHead(404).end();
  });
  const host = options.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  issuer = `http://${host}:${(server.address() as AddressInfo).port}`;

  const mint = async (sub: string): Promise<string> => {
    const now = Math.floor(Date.now() / 1000);
    return (
      new SignJWT({ email: `${sub}@bench.test`, email_verified: true })
        .setProtectedHeader({ alg: "RS256", kid, typ: "JWT" })
        .setIssuer(issuer)
        .setAudience(BENCH_CLIENT_ID)
        .setSubject(sub)
        .setIssuedAt(now)
        .setExpirationTime(now + 3600)
        // Every token its own (a sign-in accepts a token once), even two for one user in one second.
        .setJti(randomUUID())
        .sign(privateKey)
    );
  };

  return {
    issuer,
    jwksUri: `${issuer}/jwks`,
    mint,
    soakMinter: {
      issuer,
      kid: SOAK_KID,
      privateKeyPem: soak.privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    },
    async mintMany(subs, concurrency = 32) {
      const out: MintedToken[] = new Array(subs.length);
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.min(concurrency, subs.length) }, async () => {
          while (next < subs.length) {
            const i = next++;
            out[i] = { sub: subs[i]!, token: await mint(subs[i]!) };
          }
        }),
      );
      return out;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
