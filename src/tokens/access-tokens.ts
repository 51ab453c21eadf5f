import { createPrivateKey, generateKeyPairSync, type KeyObject, randomUUID } from "node:crypto";
import { createLocalJWKSet, errors as joseErrors, exportJWK, type JWK, jwtVerify, SignJWT } from "jose";
import { DomainError } from "../core/errors.ts";
import type { Clock } from "../core/clock.ts";
import type { Principal } from "../core/model.ts";
import type {
  AccessTokenClaims,
  AccessTokenIssuer,
  AccessTokenVerifier,
  SigningKeyStore,
} from "../core/ports/signing-keys.ts";
import { randomBase32 } from "../core/ids.ts";
import type { KeyEncryption } from "./key-encryption.ts";

const ALG = "ES256"; // ~10x cheaper to sign than RS256, and tokens are smaller.

export interface AccessTokenOptions {
  /** `iss` of our tokens; a function when it is known only once the server listens. */
  issuer: string | (() => string);
  audience: readonly string[];
  ttlSeconds: number;
  store: SigningKeyStore;
  encryption: KeyEncryption;
  clock: Clock;
  /** Rotate when the signing key is older than this (null: only by command). */
  rotateAfterSeconds?: number | null | undefined;
  /**
   * When the signing key cannot be opened with our KEK (sealed under another one): fail with
   * SigningKeyUnreadableError (the default), or seal a new key under ours and retire the rest
   * (the operator's way out when the old KEK is lost: `rotate-keys --replace-unreadable`).
   */
  onUnreadable?: "fail" | "replace" | undefined;
}

/**
 * The active signing key in the store cannot be opened with the configured key-encryption key:
 * the KEK differs from the one that sealed it (another replica's, a regenerated file, a typo).
 */
export class SigningKeyUnreadableError extends Error {
  override readonly name = "SigningKeyUnreadableError";
  readonly kid: string;
  constructor(kid: string, options: { cause: unknown }) {
    super(`signing key ${kid} in the database cannot be opened with the configured key-encryption key`, options);
    this.kid = kid;
  }
}

export interface LocalKeyRing extends AccessTokenIssuer, AccessTokenVerifier {
  /** The public keys tokens may be verified with (active and retired, not expired). */
  jwks(): { keys: JWK[] };
  /** The kid that signs new tokens. */
  activeKid(): string;
  /** Re-reads keys from the store (rotation by another replica or by command). */
  reload(): Promise<void>;
  /**
   * Starts signing with a new key. The old key is retired but stays published until every
   * token it signed has expired (its retirement + the access-token lifetime + clock skew).
   */
  rotate(): Promise<string>;
  /** Periodic upkeep: reload, and rotate when the schedule says so. */
  tick(): Promise<void>;
  /** Kids of keys retired because they could not be opened (`onUnreadable: "replace"`). */
  replacedUnreadable(): readonly string[];
}

/** Margin for clocks of verifiers when deciding that a retired key can leave the JWKS. */
const RETIRED_KEY_MARGIN_SECONDS = 300;

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
  let active: ActiveKey & { createdAt: Date; generation: number };
  let published: JWK[] = [];
  let verifyKeys = createLocalJWKSet({ keys: [] });
  let lastReloadForUnknownKid = 0;
  const replaced: string[] = [];
  const { issuer: issuerOption } = options;
  const issuer = typeof issuerOption === "string" ? () => issuerOption : issuerOption;

  async function reload(): Promise<void> {
    let keys = await options.store.listUsable(options.clock.now());
    if (!keys.some((k) => k.retiredAt === null)) {
      // Replicas starting together on an empty database race here; one wins, all use its key.
      await options.store.insertNext(await generate(), newestGeneration(keys));
      keys = await options.store.listUsable(options.clock.now());
    }
    // Newest unretired key signs; two replicas racing to create the first key converge on it.
    const signer = keys.find((k) => k.retiredAt === null)!;
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey({
        key: options.encryption.open(signer.privateKeyEnc, signer.kid),
        format: "der",
        type: "pkcs8",
      });
    } catch (e) {
      if (options.onUnreadable !== "replace" || replaced.includes(signer.kid))
        throw new SigningKeyUnreadableError(signer.kid, { cause: e });
      // A new key sealed under our KEK; the unreadable ones stay published (public halves) until
      // the tokens they signed have expired, as after any rotation.
      replaced.push(signer.kid);
      const now = options.clock.now();
      const fresh = await generate();
      if (await options.store.insertNext(fresh, newestGeneration(keys))) {
        await options.store.retireAllBut(fresh.kid, now, retiredKeyExpiry(now));
      }
      return reload();
    }
    active = { kid: signer.kid, generation: newestGeneration(keys), createdAt: signer.createdAt, privateKey };
    published = keys.map((k) => JSON.parse(k.publicJwk) as JWK);
    verifyKeys = createLocalJWKSet({ keys: published });
  }

  /** A key retired `now` stays published until every token it signed has expired. */
  function retiredKeyExpiry(now: Date): Date {
    return new Date(now.getTime() + (options.ttlSeconds + RETIRED_KEY_MARGIN_SECONDS) * 1000);
  }

  async function rotate(): Promise<string> {
    const now = options.clock.now();
    const fresh = await generate();
    // A concurrent rotation by another replica may win; then its key is the new one.
    if (await options.store.insertNext(fresh, active.generation)) {
      await options.store.retireAllBut(fresh.kid, now, retiredKeyExpiry(now));
    }
    await reload();
    return active.kid;
  }

  async function verify(token: string, now: Date): Promise<Principal> {
    const attempt = () =>
      jwtVerify(token, verifyKeys, {
        algorithms: [ALG],
        issuer: issuer(),
        audience: [...options.audience],
        typ: "at+jwt",
        currentDate: now,
        clockTolerance: 30,
        requiredClaims: ["sub", "sid", "exp", "iat"],
      });
    let payload;
    try {
      try {
        ({ payload } = await attempt());
      } catch (e) {
        // A key made by another replica since our last reload: reload once (rate-limited).
        if (!(e instanceof joseErrors.JWKSNoMatchingKey) || Date.now() - lastReloadForUnknownKid < 10_000) throw e;
        lastReloadForUnknownKid = Date.now();
        await reload();
        ({ payload } = await attempt());
      }
    } catch (e) {
      if (e instanceof joseErrors.JWTExpired)
        throw new DomainError("access_token_expired", "the access token has expired; refresh it", { cause: e });
      if (e instanceof joseErrors.JOSEError)
        throw new DomainError("access_token_invalid", "the access token is not valid", { cause: e });
      throw e;
    }
    const amr = Array.isArray(payload["amr"]) ? payload["amr"].filter((m): m is string => typeof m === "string") : [];
    return { userId: payload.sub!, sessionId: String(payload["sid"]), amr };
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

  async function rotateIfDue(): Promise<void> {
    const every = options.rotateAfterSeconds;
    if (every != null && options.clock.now().getTime() - active.createdAt.getTime() >= every * 1000) await rotate();
  }

  // Keys as stored, and a rotation that fell due while no replica ran.
  await reload();
  await rotateIfDue();

  return {
    ttlSeconds: options.ttlSeconds,
    jwks: () => ({ keys: published }),
    activeKid: () => active.kid,
    reload,
    rotate,
    verify,
    replacedUnreadable: () => replaced,
    async tick() {
      await reload();
      await rotateIfDue();
    },
    async issue(claims: AccessTokenClaims, now: Date): Promise<string> {
      const iat = Math.floor(now.getTime() / 1000);
      return new SignJWT({
        sid: claims.sessionId,
        // OIDC's auth_time, in seconds: lets a resource server ask for a recent sign-in (~20 bytes).
        auth_time: Math.floor(claims.authTime.getTime() / 1000),
        amr: [...claims.amr],
        ...(claims.provider === null ? {} : { idp: claims.provider }),
      })
        .setProtectedHeader({ alg: ALG, kid: active.kid, typ: "at+jwt" })
        .setIssuer(issuer())
        .setSubject(claims.userId)
        .setAudience(options.audience.length === 1 ? options.audience[0]! : [...options.audience])
        .setIssuedAt(iat)
        .setExpirationTime(iat + options.ttlSeconds)
        .setJti(randomUUID())
        .sign(active.privateKey);
    },
  };
}

/** The newest generation among `keys` (0 when none has one). */
function newestGeneration(keys: readonly { generation?: number | null }[]): number {
  return keys.reduce((max, k) => Math.max(max, k.generation ?? 0), 0);
}
