import { createHash } from "node:crypto";
import type { AuthEvents } from "./auth-events.ts";
import type { Clock } from "./clock.ts";
import { DomainError, isDomainError } from "./errors.ts";
import { newId } from "./ids.ts";
import type { ClientInfo, Principal } from "./model.ts";
import type { AuditLog } from "./ports/audit.ts";
import type { MfaStore } from "./ports/mfa.ts";
import type { JsonObject, PasskeyRecord, PasskeyStore, RelyingParty, WebauthnCeremonies } from "./ports/webauthn.ts";
import { quietRecorder } from "./quiet-audit.ts";
import { requireStepUp } from "./step-up.ts";

export interface PasskeyDeps {
  clock: Clock;
  store: PasskeyStore;
  /** For the user (name shown by the authenticator) and the TOTP state the step-up rule reads. */
  users: Pick<MfaStore, "findUser" | "findTotp">;
  /** `mfa.step_up_max_age_seconds`: how recent the second factor of a passkey change must be (step-up.ts). */
  stepUpMaxAgeSeconds: number;
  ceremonies: WebauthnCeremonies;
  /** The relying party, asked per ceremony (config/to-deps.ts relyingParty). */
  rp: () => RelyingParty;
  /** Life of a ceremony challenge, in seconds. */
  ceremonyTtlSeconds: number;
  audit: AuditLog;
  onAuditFailure?: (error: unknown) => void;
  events?: AuthEvents | undefined;
}

/** What a user sees of a passkey (never its key). */
export type PasskeyInfo = Omit<PasskeyRecord, "userId" | "credentialId" | "publicKey" | "signCount">;

export interface PasskeyService {
  /** Creation options for `navigator.credentials.create()`; the challenge is stored as a ceremony. */
  beginRegistration(principal: Principal): Promise<JsonObject>;
  finishRegistration(
    principal: Principal,
    response: unknown,
    name: string | undefined,
    client: ClientInfo,
  ): Promise<PasskeyInfo>;
  list(principal: Principal): Promise<PasskeyInfo[]>;
  rename(principal: Principal, id: string, name: string): Promise<PasskeyInfo>;
  remove(principal: Principal, id: string, client: ClientInfo): Promise<void>;
}

/** Largest response a ceremony accepts, as JSON (real ones are well under 2 KiB; attestation `none`). */
export const MAX_RESPONSE_BYTES = 16 * 1024;
const MAX_NAME = 64;

/** SHA-256 (hex) of a ceremony challenge: what the store keys ceremonies by. */
export function ceremonyHash(challenge: string): string {
  return createHash("sha256").update(challenge).digest("hex");
}

/** The response, bounded in size before anything parses it. */
export function boundedResponse(response: unknown): unknown {
  if (response === undefined || response === null) {
    throw new DomainError("webauthn_response_malformed", "the WebAuthn response is required");
  }
  if (JSON.stringify(response).length > MAX_RESPONSE_BYTES) {
    throw new DomainError(
      "webauthn_response_malformed",
      `the WebAuthn response is larger than ${MAX_RESPONSE_BYTES} bytes`,
    );
  }
  return response;
}

export function passkeyInfo(p: PasskeyRecord): PasskeyInfo {
  const { userId: _u, credentialId: _c, publicKey: _k, signCount: _s, ...info } = p;
  return info;
}

function cleanName(name: string): string {
  const trimmed = name.trim();
  if (trimmed === "" || [...trimmed].length > MAX_NAME || /\p{Cc}/u.test(trimmed)) {
    throw new DomainError("invalid_request", `name must be 1 to ${MAX_NAME} printable characters`);
  }
  return trimmed;
}

/**
 * Passkeys: registering, listing, renaming and removing the user's WebAuthn credentials. Using
 * one to answer an MFA challenge is MfaService.verify (method `webauthn`), which opens its
 * ceremony with beginWebauthn.
 */
export function createPasskeyService(deps: PasskeyDeps): PasskeyService {
  const { clock, store, ceremonies } = deps;
  const recordQuietly = quietRecorder(deps.audit, deps.onAuditFailure);

  /**
   * Every passkey change of the user's factors (begin/finish registration, removal) goes through
   * here: the one step-up rule of factor changes (step-up.ts), the same as TOTP's. Renaming
   * changes no factor and is free. A passkey assertion (VerifyMfa or StepUp) is such a second factor.
   */
  async function requireRecentSecondFactor(principal: Principal): Promise<void> {
    await requireStepUp(
      principal,
      async () => {
        const [totp, passkeys] = await Promise.all([
          deps.users.findTotp(principal.userId),
          store.listPasskeys(principal.userId),
        ]);
        return { totp: totp?.confirmedAt != null, passkeys: passkeys.filter((p) => p.flaggedAt === null).length };
      },
      deps.stepUpMaxAgeSeconds,
      clock.now(),
    );
  }

  async function finish(principal: Principal, response: unknown, name: string | undefined, client: ClientInfo) {
    await requireRecentSecondFactor(principal);
    const label = name === undefined ? "Passkey" : cleanName(name);
    const { challenge } = ceremonies.read(boundedResponse(response), "registration");
    const now = clock.now();
    const ceremony = await store.findCeremony(ceremonyHash(challenge));
    if (
      ceremony === null ||
      ceremony.purpose !== "registration" ||
      ceremony.userId !== principal.userId ||
      ceremony.consumedAt !== null ||
      ceremony.expiresAt <= now
    ) {
      throw new DomainError(
        "webauthn_challenge_invalid",
        "this registration is unknown, expired or already finished; start again",
      );
    }
    const verified = await ceremonies.verifyRegistration({ rp: deps.rp(), response, challenge });
    const passkey: PasskeyRecord = {
      id: newId("pk"),
      userId: principal.userId,
      ...verified,
      name: label,
      createdAt: now,
      lastUsedAt: null,
      flaggedAt: null,
    };
    const saved = await store.registerPasskey(ceremony.id, passkey, now, {
      type: "mfa.passkey_registered",
      at: now,
      userId: principal.userId,
      client,
      detail: {
        passkey_id: passkey.id,
        device_type: passkey.deviceType,
        backed_up: passkey.backedUp,
        aaguid: passkey.aaguid,
      },
    });
    if (!saved)
      throw new DomainError("webauthn_challenge_invalid", "this registration was finished meanwhile; start again");
    return passkeyInfo(passkey);
  }

  return {
    async beginRegistration(principal) {
      await requireRecentSecondFactor(principal);
      const user = await deps.users.findUser(principal.userId);
      if (user === null) throw new DomainError("session_revoked", "this user no longer exists");
      const now = clock.now();
      const existing = await store.listPasskeys(user.id);
      const { options, challenge } = await ceremonies.registrationOptions({
        rp: deps.rp(),
        user: { id: user.id, name: user.username },
        exclude: existing.map((p) => ({ credentialId: p.credentialId, transports: p.transports })),
      });
      await store.saveCeremony({
        id: newId("wac"),
        challengeHash: ceremonyHash(challenge),
        userId: user.id,
        purpose: "registration",
        mfaChallengeId: null,
        sessionId: null,
        createdAt: now,
        expiresAt: new Date(now.getTime() + deps.ceremonyTtlSeconds * 1000),
      });
      return options;
    },

    async finishRegistration(principal, response, name, client) {
      try {
        const info = await finish(principal, response, name, client);
        deps.events?.passkeyRegistration("success");
        return info;
      } catch (e) {
        const code = isDomainError(e) ? e.code : "internal";
        deps.events?.passkeyRegistration(code);
        if (code.startsWith("webauthn_")) {
          await recordQuietly({
            type: "mfa.passkey_refused",
            at: clock.now(),
            code,
            userId: principal.userId,
            client,
            detail: { action: "register" },
          });
        }
        throw e;
      }
    },

    async list(principal) {
      return (await store.listPasskeys(principal.userId)).map(passkeyInfo);
    },

    async rename(principal, id, name) {
      const renamed = await store.renamePasskey(principal.userId, id, cleanName(name));
      if (renamed === null) throw new DomainError("webauthn_credential_not_found", "no such passkey");
      return passkeyInfo(renamed);
    },

    async remove(principal, id, client) {
      await requireRecentSecondFactor(principal);
      const now = clock.now();
      const removed = await store.removePasskey(principal.userId, id, {
        type: "mfa.passkey_removed",
        at: now,
        userId: principal.userId,
        client,
        detail: { passkey_id: id },
      });
      if (!removed) throw new DomainError("webauthn_credential_not_found", "no such passkey");
    },
  };
}
