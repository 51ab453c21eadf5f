import { MfaService } from "../../../gen/pb/identity/v1/mfa_service_pb.ts";
import { mfaSettings, relyingParty, totpSettings } from "../../config/to-deps.ts";
import { createMfaService, type MfaService as MfaCore } from "../../core/mfa.ts";
import { createPasskeyService, type PasskeyService } from "../../core/passkeys.ts";
import { registerMfaService } from "../../rpc/mfa-service.ts";
import { createRecoveryCodes } from "../../tokens/recovery-codes.ts";
import { createSecretBox } from "../../tokens/secret-box.ts";
import { createTotpEngine } from "../../tokens/totp.ts";
import { createWebauthnCeremonies } from "../../webauthn/ceremonies.ts";
import type { ServiceModule } from "../services.ts";

/**
 * MfaService: the signed-in user's factors (TOTP, recovery codes, passkeys) and step-up. Every
 * method needs the user's access token. Its MFA service also completes the challenges sign-in
 * opens (AuthService's VerifyMfa, the OAuth door's MFA grant).
 */
export const mfaService: ServiceModule<
  { mfa: MfaCore; passkeys: PasskeyService },
  { mfa: MfaCore; passkeys: PasskeyService }
> = {
  service: MfaService,
  access: { kind: "session" },
  build(parts) {
    const { config, stores, clock } = parts;
    // Passkeys, for MFA challenges and for managing them: one store, one relying party.
    const webauthn = {
      store: stores.passkeys,
      ceremonies: createWebauthnCeremonies(),
      rp: relyingParty(config, parts.urls),
      ceremonyTtlSeconds: config.webauthn.challenge_ttl_seconds,
    };
    const settings = mfaSettings(config);
    const mfa = createMfaService({
      ...settings,
      clock,
      addressLimit: parts.addressLimit,
      store: stores.mfa,
      audit: stores.audit,
      totp: createTotpEngine(totpSettings(config)),
      secrets: createSecretBox(parts.keyEncryption),
      recoveryCodes: createRecoveryCodes(parts.kek),
      opaqueTokens: parts.opaqueTokens,
      accessTokens: parts.keyRing,
      budget: stores.attemptBudget,
      onAuditFailure: parts.onAuditFailure,
      events: parts.events,
      passkeys: webauthn,
    });
    const passkeys = createPasskeyService({
      ...webauthn,
      clock,
      users: stores.mfa,
      stepUpMaxAgeSeconds: settings.stepUpMaxAgeSeconds,
      audit: stores.audit,
      onAuditFailure: parts.onAuditFailure,
      events: parts.events,
    });
    return { mfa, passkeys };
  },
  register: registerMfaService,
};
