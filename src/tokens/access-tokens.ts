import { createPrivateKey, generateKeyPairSync, type KeyObject, randomUUID } from "node:crypto";
import { exportJWK, type JWK, SignJWT } from "jose";
import type { Clock } from "../core/clock.ts";
import type { AccessTokenClaims, AccessTokenIssuer, SigningKeyStore } from "../core/ports.ts";
import { randomBase32 } from "../core/ids.ts";
import type { KeyEncryption } from "./key-encryption.ts";

const ALG = "ES256"; // ~10x cheaper to sign than RS256, and tokens are smaller.

export interface AccessTokenOptions {
  issuer: string;
  audience: readonly string[];
  ttlSeconds: number;
  store: SigningKeyStore;
  encryption: KeyEncryption;
  clock: Clock;
}

export interface LocalKeyRing extends AccessTokenIssuer {
  /** The public keys tokens may be verified with (active and retired, not expired). */
  jwks(): { keys: JWK[] };
  /** Re-reads keys from the store (rotation by another replica or by command). */
  reload(): Promise<void>;
}

interface ActiveKey {
  kid: string;
  privateKey: KeyObject;
}

/**
 * Signs our access tokens (RFC 9068 `at+jwt`) with the newest stored ES256 key, creating the
 * first key when the store has none. Keys persist in the store, private halves sealed with the
 * KEK, so every replica and every restart signs and publishes the same keys.
 */
export async function createLocalKeyRing(options: AccessTokenOptions): Promise<LocalKeyRing> {
  let active: ActiveKey;
  let published: JWK[] = [];

  async function reload(): Promise<void> {
    let keys = await options.store.listUsable(options.clock.now());
    if (!keys.some((k) => k.retiredAt === null)) {
      await options.store.insert(await generate());
      keys = await options.store.listUsable(options.clock.now());
    }
    // Newest unretired key signs; two replicas racing to create the first key converge on it.
    const signer = keys.find((k) => k.retiredAt === null)!;
    active = {
      kid: signer.kid,
      privateKey: createPrivateKey({
        key: options.encryption.open(signer.privateKeyEnc, signer.kid),
        format: "der",
        type: "pkcs8",
      }),
    };
    published = keys.map((k) => JSON.parse(k.publicJwk) as JWK);
  }

  async function generate() {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const kid = `${options.clock.now().toISOString().slice(0, 10)}-${randomBase32(5)}`;
    const jwk = { ...(await exportJWK(publicKey)), kid, alg: ALG, use: "sig" };
    return {
      kid,
      alg: ALG,
      publicJwk: JSON.stringify(jwk),
      privateKeyEnc: options.encryption.seal(privateKey.export({ format: "der", type: "pkcs8" }), kid),
      createdAt: options.clock.now(),
      retiredAt: null,
      expiresAt: null,
    };
  }

  await reload();

  return {
    ttlSeconds: options.ttlSeconds,
    jwks: () => ({ keys: published }),
    reload,
    async issue(claims: AccessTokenClaims, now: Date): Promise<string> {
      const iat = Math.floor(now.getTime() / 1000);
      return new SignJWT({
        sid: claims.sessionId,
        amr: [...claims.amr],
        ...(claims.provider === null ? {} : { idp: claims.provider }),
      })
        .setProtectedHeader({ alg: ALG, kid: active.kid, typ: "at+jwt" })
        .setIssuer(options.issuer)
        .setSubject(claims.userId)
        .setAudience(options.audience.length === 1 ? options.audience[0]! : [...options.audience])
        .setIssuedAt(iat)
        .setExpirationTime(iat + options.ttlSeconds)
        .setJti(randomUUID())
        .sign(active.privateKey);
    },
  };
}
