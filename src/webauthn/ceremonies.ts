import { createHash, timingSafeEqual } from "node:crypto";
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  type AuthenticationResponseJSON,
  type AuthenticatorTransport,
  type RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from "@simplewebauthn/server";
import { decodeAttestationObject, parseAuthenticatorData } from "@simplewebauthn/server/helpers";
import { DomainError } from "../core/errors.ts";
import type { JsonObject, RelyingParty, WebauthnCeremonies } from "../core/ports/webauthn.ts";

/** COSE algorithms we accept: EdDSA (Ed25519), ES256, RS256 (Windows Hello). */
const ALGORITHMS = [-8, -7, -257];
const B64URL = /^[A-Za-z0-9_-]*$/;
/** Largest decoded clientDataJSON we parse (real ones are a few hundred bytes). */
const MAX_CLIENT_DATA = 4096;

function malformed(message: string, cause?: unknown): DomainError {
  return new DomainError("webauthn_response_malformed", message, cause === undefined ? undefined : { cause });
}

function b64url(value: unknown, field: string): Buffer {
  if (typeof value !== "string" || value === "" || !B64URL.test(value)) throw malformed(`${field} must be base64url`);
  return Buffer.from(value, "base64url");
}

function objectOf(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw malformed(`${field} must be an object`);
  return value as Record<string, unknown>;
}

interface ClientData {
  type: string;
  challenge: string;
  origin: string;
}

/** The response's outer shape and its clientDataJSON, checked field by field (never trusted). */
function shapeOf(response: unknown, kind: "registration" | "authentication") {
  const r = objectOf(response, "the WebAuthn response");
  const id = b64url(r["id"], "id");
  if (r["rawId"] !== undefined && !id.equals(b64url(r["rawId"], "rawId"))) throw malformed("id and rawId differ");
  if (r["type"] !== "public-key") throw malformed('type must be "public-key"');
  const inner = objectOf(r["response"], "response");
  const raw = b64url(inner["clientDataJSON"], "response.clientDataJSON");
  if (raw.length > MAX_CLIENT_DATA) throw malformed("response.clientDataJSON is too large");
  let clientData: ClientData;
  try {
    clientData = JSON.parse(raw.toString("utf8")) as ClientData;
  } catch (e) {
    throw malformed("response.clientDataJSON is not JSON", e);
  }
  if (
    typeof clientData !== "object" ||
    clientData === null ||
    typeof clientData.challenge !== "string" ||
    !B64URL.test(clientData.challenge)
  ) {
    throw malformed("response.clientDataJSON has no challenge");
  }
  if (typeof clientData.origin !== "string" || typeof clientData.type !== "string")
    throw malformed("response.clientDataJSON has no origin or type");
  const authData =
    kind === "registration"
      ? attestedAuthData(b64url(inner["attestationObject"], "response.attestationObject"))
      : b64url(inner["authenticatorData"], "response.authenticatorData");
  if (kind === "authentication") b64url(inner["signature"], "response.signature");
  let parsed;
  try {
    parsed = parseAuthenticatorData(new Uint8Array(authData));
  } catch (e) {
    throw malformed("the authenticator data cannot be read", e);
  }
  return { id: id.toString("base64url"), clientData, authData: parsed };
}

function attestedAuthData(attestationObject: Buffer): Buffer {
  let authData: unknown;
  try {
    authData = decodeAttestationObject(new Uint8Array(attestationObject)).get("authData");
  } catch (e) {
    throw malformed("response.attestationObject is not valid CBOR", e);
  }
  if (!(authData instanceof Uint8Array)) throw malformed("response.attestationObject has no authData");
  return Buffer.from(authData);
}

/**
 * The checks that get their own codes, before the library's: the origin (the page that ran the
 * ceremony) and the RP ID hash (the scope the authenticator signed for). A phishing page fails
 * the first; a credential made for another site fails the second.
 */
function checkScope(rp: RelyingParty, clientData: ClientData, rpIdHash: Uint8Array, type: string) {
  if (clientData.type !== type)
    throw new DomainError("webauthn_verification_failed", `clientDataJSON.type must be ${type}`);
  if (!rp.origins.includes(clientData.origin)) {
    throw new DomainError(
      "webauthn_origin_mismatch",
      "this passkey ceremony ran on a page this service does not accept",
    );
  }
  const expected = createHash("sha256").update(rp.id).digest();
  if (rpIdHash.length !== 32 || !timingSafeEqual(expected, rpIdHash)) {
    throw new DomainError("webauthn_rp_id_mismatch", "this passkey is scoped to another site");
  }
}

/** The options as plain JSON: the library leaves `undefined` members, which no JSON (or Struct) has. */
function jsonOf(options: object): JsonObject {
  return JSON.parse(JSON.stringify(options)) as JsonObject;
}

function refused(e: unknown): DomainError {
  return new DomainError("webauthn_verification_failed", "the passkey response did not verify", { cause: e });
}

/** WebAuthn ceremonies on @simplewebauthn/server (the port: core/ports/webauthn.ts). */
export function createWebauthnCeremonies(): WebauthnCeremonies {
  return {
    read(response, kind) {
      const { id, clientData } = shapeOf(response, kind);
      return { challenge: clientData.challenge, credentialId: id };
    },

    async registrationOptions({ rp, user, exclude }) {
      const options = await generateRegistrationOptions({
        rpName: rp.name,
        rpID: rp.id,
        userName: user.name,
        userID: new TextEncoder().encode(user.id),
        attestationType: "none",
        excludeCredentials: exclude.map((c) => ({
          id: c.credentialId,
          transports: c.transports as AuthenticatorTransport[],
        })),
        authenticatorSelection: { residentKey: "required", userVerification: "preferred" },
        supportedAlgorithmIDs: ALGORITHMS,
      });
      return { options: jsonOf(options), challenge: options.challenge };
    },

    async verifyRegistration({ rp, response, challenge }) {
      const { clientData, authData } = shapeOf(response, "registration");
      checkScope(rp, clientData, authData.rpIdHash, "webauthn.create");
      let result;
      try {
        result = await verifyRegistrationResponse({
          response: response as RegistrationResponseJSON,
          expectedChallenge: challenge,
          expectedOrigin: [...rp.origins],
          expectedRPID: rp.id,
          requireUserVerification: false,
          supportedAlgorithmIDs: ALGORITHMS,
        });
      } catch (e) {
        throw refused(e);
      }
      if (!result.verified) throw refused(undefined);
      const info = result.registrationInfo;
      const transports = (response as RegistrationResponseJSON).response.transports;
      return {
        credentialId: info.credential.id,
        publicKey: Buffer.from(info.credential.publicKey).toString("base64url"),
        signCount: info.credential.counter,
        transports: Array.isArray(transports) ? transports.filter((t) => typeof t === "string").slice(0, 8) : [],
        deviceType: info.credentialDeviceType,
        backedUp: info.credentialBackedUp,
        aaguid: info.aaguid,
      };
    },

    async authenticationOptions({ rp, allow }) {
      const options = await generateAuthenticationOptions({
        rpID: rp.id,
        allowCredentials: allow.map((c) => ({
          id: c.credentialId,
          transports: c.transports as AuthenticatorTransport[],
        })),
        userVerification: "preferred",
      });
      return { options: jsonOf(options), challenge: options.challenge };
    },

    async verifyAuthentication({ rp, response, challenge, credential }) {
      const { clientData, authData } = shapeOf(response, "authentication");
      checkScope(rp, clientData, authData.rpIdHash, "webauthn.get");
      let result;
      try {
        result = await verifyAuthenticationResponse({
          response: response as AuthenticationResponseJSON,
          expectedChallenge: challenge,
          expectedOrigin: [...rp.origins],
          expectedRPID: rp.id,
          requireUserVerification: false,
          // The counter is the core's to judge (a regression flags the credential): 0 here
          // makes the library accept any counter.
          credential: {
            id: credential.credentialId,
            publicKey: new Uint8Array(Buffer.from(credential.publicKey, "base64url")),
            counter: 0,
          },
        });
      } catch (e) {
        throw refused(e);
      }
      if (!result.verified) throw refused(undefined);
      return {
        signCount: result.authenticationInfo.newCounter,
        backedUp: result.authenticationInfo.credentialBackedUp,
      };
    },
  };
}
