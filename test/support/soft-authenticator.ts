/**
 * A software WebAuthn authenticator (what a browser and a platform authenticator do together),
 * for driving passkey ceremonies from Node: it answers creation options with a `none`
 * attestation (CBOR, written by the small encoder below) and request options with an assertion
 * signed over authenticatorData || SHA-256(clientDataJSON). ES256 (P-256) and EdDSA (Ed25519).
 * Every field a bad client could get wrong can be overridden, to test the server's refusals.
 */
import { createHash, generateKeyPairSync, type KeyObject, randomBytes, sign } from "node:crypto";

export type CoseAlg = "ES256" | "EdDSA";

type Cbor = number | string | Uint8Array | Cbor[] | Map<Cbor, Cbor> | { [key: string]: Cbor };

/** Minimal deterministic CBOR (RFC 8949): unsigned/negative ints, byte and text strings, arrays, maps. */
export function cborEncode(value: Cbor): Buffer {
  const head = (major: number, n: number): Buffer => {
    if (n < 24) return Buffer.from([(major << 5) | n]);
    if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
    if (n < 0x10000) return Buffer.from([(major << 5) | 25, n >> 8, n & 0xff]);
    const b = Buffer.alloc(5);
    b[0] = (major << 5) | 26;
    b.writeUInt32BE(n, 1);
    return b;
  };
  if (typeof value === "number") return value >= 0 ? head(0, value) : head(1, -1 - value);
  if (typeof value === "string") {
    const bytes = Buffer.from(value, "utf8");
    return Buffer.concat([head(3, bytes.length), bytes]);
  }
  if (value instanceof Uint8Array) return Buffer.concat([head(2, value.length), value]);
  if (Array.isArray(value)) return Buffer.concat([head(4, value.length), ...value.map(cborEncode)]);
  const entries = value instanceof Map ? [...value.entries()] : Object.entries(value);
  return Buffer.concat([head(5, entries.length), ...entries.flatMap(([k, v]) => [cborEncode(k), cborEncode(v)])]);
}

const FLAG = { UP: 0x01, UV: 0x04, BE: 0x08, BS: 0x10, AT: 0x40 } as const;

export interface SoftCredential {
  id: Buffer;
  alg: CoseAlg;
  privateKey: KeyObject;
  publicKey: KeyObject;
  rpId: string;
  userHandle: string;
  signCount: number;
}

/** What a test may change in one ceremony (defaults: what an honest browser would send). */
export interface CeremonyOverrides {
  origin?: string;
  /** The RP ID whose SHA-256 goes into authenticatorData. */
  rpId?: string;
  challenge?: string;
  type?: string;
  /** The counter to report (assertions); default: one more than the last. */
  signCount?: number;
}

function coseKey(alg: CoseAlg, publicKey: KeyObject): Buffer {
  const jwk = publicKey.export({ format: "jwk" });
  const x = Buffer.from(jwk.x!, "base64url");
  if (alg === "EdDSA")
    return cborEncode(
      new Map<Cbor, Cbor>([
        [1, 1],
        [3, -8],
        [-1, 6],
        [-2, x],
      ]),
    );
  const y = Buffer.from(jwk.y!, "base64url");
  return cborEncode(
    new Map<Cbor, Cbor>([
      [1, 2],
      [3, -7],
      [-1, 1],
      [-2, x],
      [-3, y],
    ]),
  );
}

const sha256 = (data: Buffer | string) => createHash("sha256").update(data).digest();

function counterBytes(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/**
 * One authenticator holding any number of credentials. `origin` is the page the ceremonies run
 * on; `keepsCounter` false makes it report 0 always (as synced passkeys do).
 */
export function createSoftAuthenticator(options: {
  origin: string;
  alg?: CoseAlg;
  keepsCounter?: boolean;
  backupEligible?: boolean;
}) {
  const credentials: SoftCredential[] = [];
  const keepsCounter = options.keepsCounter ?? true;
  const backup = options.backupEligible ?? true;
  const flags = (extra: number) => FLAG.UP | FLAG.UV | (backup ? FLAG.BE | FLAG.BS : 0) | extra;

  const clientData = (type: string, challenge: string, o: CeremonyOverrides) =>
    Buffer.from(
      JSON.stringify({
        type: o.type ?? type,
        challenge: o.challenge ?? challenge,
        origin: o.origin ?? options.origin,
        crossOrigin: false,
      }),
    );

  return {
    credentials,

    /**
     * Answers PublicKeyCredentialCreationOptionsJSON with a RegistrationResponseJSON: a new
     * credential, or `reuse`'s again (what a browser would refuse for an excluded credential).
     */
    create(creation: Record<string, unknown>, o: CeremonyOverrides = {}, reuse?: SoftCredential) {
      const rp = creation["rp"] as { id: string };
      const user = creation["user"] as { id: string };
      const alg = reuse?.alg ?? options.alg ?? "ES256";
      const { privateKey, publicKey } =
        reuse ??
        (alg === "ES256" ? generateKeyPairSync("ec", { namedCurve: "P-256" }) : generateKeyPairSync("ed25519"));
      const id = reuse?.id ?? randomBytes(32);
      const credential: SoftCredential = reuse ?? {
        id,
        alg,
        privateKey,
        publicKey,
        rpId: rp.id,
        userHandle: user.id,
        signCount: 0,
      };
      const idLength = Buffer.alloc(2);
      idLength.writeUInt16BE(id.length);
      const authData = Buffer.concat([
        sha256(o.rpId ?? rp.id),
        Buffer.from([flags(FLAG.AT)]),
        counterBytes(0),
        Buffer.alloc(16), // AAGUID: zeros, as with attestation `none`
        idLength,
        id,
        coseKey(alg, publicKey),
      ]);
      const attestationObject = cborEncode({ fmt: "none", attStmt: {}, authData });
      if (reuse === undefined) credentials.push(credential);
      return {
        id: id.toString("base64url"),
        rawId: id.toString("base64url"),
        type: "public-key",
        clientExtensionResults: {},
        authenticatorAttachment: "platform",
        response: {
          clientDataJSON: clientData("webauthn.create", creation["challenge"] as string, o).toString("base64url"),
          attestationObject: attestationObject.toString("base64url"),
          transports: ["internal", "hybrid"],
        },
      };
    },

    /** Answers PublicKeyCredentialRequestOptionsJSON with an AuthenticationResponseJSON (by `credential`, default the first). */
    get(
      request: Record<string, unknown>,
      o: CeremonyOverrides = {},
      credential: SoftCredential | undefined = credentials[0],
    ) {
      if (credential === undefined) throw new Error("the soft authenticator holds no credential");
      const next = o.signCount ?? (keepsCounter ? credential.signCount + 1 : 0);
      credential.signCount = Math.max(credential.signCount, next);
      const authData = Buffer.concat([sha256(o.rpId ?? credential.rpId), Buffer.from([flags(0)]), counterBytes(next)]);
      const data = clientData("webauthn.get", request["challenge"] as string, o);
      const signed = Buffer.concat([authData, sha256(data)]);
      const signature =
        credential.alg === "ES256"
          ? sign("sha256", signed, credential.privateKey)
          : sign(null, signed, credential.privateKey);
      return {
        id: credential.id.toString("base64url"),
        rawId: credential.id.toString("base64url"),
        type: "public-key",
        clientExtensionResults: {},
        authenticatorAttachment: "platform",
        response: {
          clientDataJSON: data.toString("base64url"),
          authenticatorData: authData.toString("base64url"),
          signature: signature.toString("base64url"),
          userHandle: credential.userHandle,
        },
      };
    },
  };
}

export type SoftAuthenticator = ReturnType<typeof createSoftAuthenticator>;
