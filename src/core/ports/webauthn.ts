import type { AuditRecord } from "../model.ts";

/** Ports of passkeys: the WebAuthn checks (a library) and the credentials and ceremonies (a database). */

/** Who the passkeys are for: the RP ID they are scoped to, the name shown, the origins allowed. */
export interface RelyingParty {
  id: string;
  name: string;
  origins: readonly string[];
}

/** JSON as the client sends or receives it (RegistrationResponseJSON and friends). */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** What a verified registration yields; the core stores it. */
export interface VerifiedRegistration {
  /** base64url. */
  credentialId: string;
  /** The COSE public key, base64url. */
  publicKey: string;
  signCount: number;
  transports: string[];
  deviceType: "singleDevice" | "multiDevice";
  backedUp: boolean;
  aaguid: string;
}

/** What a verified assertion yields. */
export interface VerifiedAssertion {
  /** The counter the authenticator reported (0: it keeps none). */
  signCount: number;
  backedUp: boolean;
}

/**
 * The WebAuthn ceremonies: options out, responses checked. Every refusal is a DomainError with a
 * `webauthn_*` code: `webauthn_response_malformed` (shape, base64url, CBOR, size),
 * `webauthn_origin_mismatch`, `webauthn_rp_id_mismatch`, `webauthn_verification_failed`.
 */
export interface WebauthnCeremonies {
  /**
   * The ceremony challenge a response answers (base64url, from its clientDataJSON), and for an
   * assertion the credential id it names. Throws `webauthn_response_malformed`.
   */
  read(response: unknown, kind: "registration" | "authentication"): { challenge: string; credentialId: string };
  registrationOptions(input: {
    rp: RelyingParty;
    user: { id: string; name: string };
    exclude: readonly { credentialId: string; transports: readonly string[] }[];
  }): Promise<{ options: JsonObject; challenge: string }>;
  verifyRegistration(input: { rp: RelyingParty; response: unknown; challenge: string }): Promise<VerifiedRegistration>;
  authenticationOptions(input: {
    rp: RelyingParty;
    allow: readonly { credentialId: string; transports: readonly string[] }[];
  }): Promise<{ options: JsonObject; challenge: string }>;
  /**
   * Checks an assertion against the stored credential. The counter is not judged here: the
   * core compares `signCount` with the stored one (a regression flags the credential).
   */
  verifyAuthentication(input: {
    rp: RelyingParty;
    response: unknown;
    challenge: string;
    credential: { credentialId: string; publicKey: string };
  }): Promise<VerifiedAssertion>;
}

export interface PasskeyRecord {
  id: string;
  userId: string;
  credentialId: string;
  publicKey: string;
  signCount: number;
  transports: string[];
  deviceType: "singleDevice" | "multiDevice";
  backedUp: boolean;
  aaguid: string;
  name: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  flaggedAt: Date | null;
}

export interface CeremonyRecord {
  id: string;
  userId: string;
  purpose: "registration" | "authentication" | "step_up";
  mfaChallengeId: string | null;
  /** For `step_up`: the signed-in session it was opened by, the only one it can mark. */
  sessionId: string | null;
  expiresAt: Date;
  consumedAt: Date | null;
}

export interface NewCeremony extends Omit<CeremonyRecord, "consumedAt"> {
  /** SHA-256 (hex) of the challenge; the challenge itself is never stored. */
  challengeHash: string;
  createdAt: Date;
}

/** Passkeys and their ceremonies, on a database. */
export interface PasskeyStore {
  listPasskeys(userId: string): Promise<PasskeyRecord[]>;
  findPasskeyByCredentialId(credentialId: string): Promise<PasskeyRecord | null>;
  saveCeremony(ceremony: NewCeremony): Promise<void>;
  /** Ceremonies opened for the MFA challenge `mfaChallengeId`, spent or not. */
  countCeremonies(mfaChallengeId: string): Promise<number>;
  /** Step-up ceremonies of the session `sessionId` still live at `now`, spent or not. */
  countLiveStepUps(sessionId: string, now: Date): Promise<number>;
  findCeremony(challengeHash: string): Promise<CeremonyRecord | null>;
  /**
   * In one transaction: spends the live ceremony `ceremonyId` (false, nothing written, when it
   * was spent meanwhile), stores the passkey and writes the audit record. Rejects with DomainError
   * `webauthn_credential_exists` when the credential id is registered already.
   */
  registerPasskey(ceremonyId: string, passkey: PasskeyRecord, now: Date, audit: AuditRecord): Promise<boolean>;
  /** Renames the user's passkey; null when the user has none with that id. */
  renamePasskey(userId: string, id: string, name: string): Promise<PasskeyRecord | null>;
  /**
   * Removes the user's passkey and writes the audit record; when the user has no second factor
   * left (no confirmed TOTP, no passkey), device trust ends too. False when there was none.
   */
  removePasskey(userId: string, id: string, audit: AuditRecord): Promise<boolean>;
  /** Marks the passkey refused (its counter went backwards) and writes the audit record. */
  flagPasskey(id: string, now: Date, audit: AuditRecord): Promise<void>;
  /** Deletes ceremonies that expired before `before`; returns how many. */
  purgeExpiredCeremonies(before: Date): Promise<number>;
}
