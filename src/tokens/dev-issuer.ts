import { randomUUID } from "node:crypto";
import { createLocalJWKSet, exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import type { Clock } from "../core/clock.ts";
import type { KeyResolver } from "./remote-key-set.ts";

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
 * whole flow can be tried with curl. Only ever enabled in dev mode (the key lives in memory and
 * anyone who can reach the port can mint tokens for it).
 */
export interface DevIssuer {
  issuer: string;
  jwks(): { keys: JWK[] };
  keys: KeyResolver;
  /** The discovery document; `baseUrl` is where the client reached us (port 0 safe). */
  discovery(baseUrl: string): Record<string, unknown>;
  mint(request: DevMintRequest): Promise<string>;
}

export async function createDevIssuer(options: { issuer: string; clock: Clock }): Promise<DevIssuer> {
  const { privateKey, publicKey } = await generateKeyPair("RS256");
  const kid = `dev-${randomUUID().slice(0, 8)}`;
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" };
  const jwks = { keys: [publicJwk] };
  return {
    issuer: options.issuer,
    jwks: () => jwks,
    keys: createLocalJWKSet(jwks),
    discovery: (baseUrl) => ({
      issuer: options.issuer,
      jwks_uri: `${baseUrl}/dev/oidc/jwks`,
      token_endpoint: `${baseUrl}/dev/oidc/token`,
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
      return new SignJWT(claims)
        .setProtectedHeader({ alg: "RS256", kid, typ: "JWT" })
        .setIssuer(options.issuer)
        .setSubject(r.sub)
        .setAudience(r.aud ?? DEV_CLIENT_ID)
        .setIssuedAt(now)
        .setExpirationTime(now + 600)
        // Each token is its own (a sign-in accepts a token once), even two minted in one second.
        .setJti(randomUUID())
        .sign(privateKey);
    },
  };
}
