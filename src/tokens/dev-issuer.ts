import { existsSync, readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { createLocalJWKSet, exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from "jose";
import type { Clock } from "../core/clock.ts";
import type { KeyResolver } from "./remote-key-set.ts";
import { writeSecretFile } from "./secret-file.ts";

export const DEV_CLIENT_ID = "dev-client";

export interface DevMintRequest {
  sub: string;
  email?: string | undefined;
  email_verified?: boolean | undefined;
  name?: string | undefined;
  preferred_username?: string | undefined;
  nonce?: string | undefined;
  amr?: string[] | undefined;
  aud?: string | undefined;
}

/**
 * A development OpenID issuer built into the service: it mints ID tokens for any test user so the
 * whole flow can be tried with curl. Only ever enabled in dev mode (anyone who can reach the port
 * can mint tokens for it).
 */
export interface DevIssuer {
  readonly issuer: string;
  jwks(): { keys: JWK[] };
  keys: KeyResolver;
  /** The discovery document: every URL under the issuer's. */
  discovery(): Record<string, unknown>;
  mint(request: DevMintRequest): Promise<string>;
}

export async function createDevIssuer(options: {
  /** The issuer URL; a function when it is known only once the server listens. */
  issuer: () => string;
  clock: Clock;
  /**
   * Where the signing key lives (a private JWK, mode 0600), so ID tokens minted before a restart
   * still verify after it; created on first use. Without it the key lives in memory.
   */
  keyFile?: string | undefined;
}): Promise<DevIssuer> {
  const { privateJwk, kid } = await devKey(options.keyFile);
  const privateKey = await importJWK(privateJwk, "RS256");
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicPart } = privateJwk;
  const jwks = { keys: [{ ...publicPart, kid, alg: "RS256", use: "sig" } satisfies JWK] };
  return {
    get issuer() {
      return options.issuer();
    },
    jwks: () => jwks,
    keys: createLocalJWKSet(jwks),
    discovery: () => ({
      issuer: options.issuer(),
      jwks_uri: `${options.issuer()}/jwks`,
      token_endpoint: `${options.issuer()}/token`,
      id_token_signing_alg_values_supported: ["RS256"],
      subject_types_supported: ["public"],
      response_types_supported: ["id_token"],
    }),
    async mint(r) {
      const now = Math.floor(options.clock.now().getTime() / 1000);
      const claims: Record<string, unknown> = {
        email: r.email,
        email_verified: r.email === undefined ? undefined : (r.email_verified ?? true),
        name: r.name,
        preferred_username: r.preferred_username,
        nonce: r.nonce,
        amr: r.amr,
      };
      for (const k of Object.keys(claims)) if (claims[k] === undefined) delete claims[k];
      return (
        new SignJWT(claims)
          .setProtectedHeader({ alg: "RS256", kid, typ: "JWT" })
          .setIssuer(options.issuer())
          .setSubject(r.sub)
          .setAudience(r.aud ?? DEV_CLIENT_ID)
          .setIssuedAt(now)
          .setExpirationTime(now + 600)
          // Each token is its own (a sign-in accepts a token once), even two minted in one second.
          .setJti(randomUUID())
          .sign(privateKey)
      );
    },
  };
}

/** The dev issuer's key: from `file` when it exists, else new (and written there, if given). */
async function devKey(file: string | undefined): Promise<{ privateJwk: JWK; kid: string }> {
  if (file !== undefined && existsSync(file)) {
    const privateJwk = JSON.parse(readFileSync(file, "utf8")) as JWK;
    if (privateJwk.kty !== "RSA" || typeof privateJwk.d !== "string" || typeof privateJwk.kid !== "string") {
      throw new Error("it holds no RSA private JWK with a kid");
    }
    return { privateJwk, kid: privateJwk.kid };
  }
  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const kid = `dev-${randomUUID().slice(0, 8)}`;
  const privateJwk: JWK = { ...(await exportJWK(privateKey)), kid };
  if (file === undefined) return { privateJwk, kid };
  // Two processes starting on one data dir: the first file written wins, both use it.
  writeSecretFile(file, `${JSON.stringify(privateJwk)}\n`);
  return devKey(file);
}
