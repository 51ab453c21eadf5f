import { AuthService } from "../../../gen/pb/identity/v1/auth_service_pb.ts";
import { adaptiveMfaSettings, nonceSettings, signinSettings } from "../../config/to-deps.ts";
import { createAdaptiveMfa } from "../../core/adaptive-mfa.ts";
import { createNonceService, type NonceService } from "../../core/nonces.ts";
import { createSigninService, type SigninService } from "../../core/signin.ts";
import { openGeoIp } from "../../geo/geoip.ts";
import { type AuthServiceDeps, registerAuthService } from "../../rpc/auth-service.ts";
import { createNonceSealer } from "../../tokens/nonce-sealer.ts";
import { sha256Hex } from "../../tokens/sha256.ts";
import type { ServiceParts } from "../parts.ts";
import type { ServiceModule } from "../services.ts";

/**
 * AuthService: sign-in with an ID token (and its nonces), MFA completion, refresh, sign-out.
 * Open to anyone; SignOut also takes the access token of the session it ends.
 */
export const authService: ServiceModule<{ signin: SigninService; nonces: NonceService }, AuthServiceDeps> = {
  service: AuthService,
  access: { kind: "public", sessionOptional: [AuthService.method.signOut] },
  build(parts) {
    const nonces = createNonceService({
      clock: parts.clock,
      sealer: createNonceSealer(parts.kek),
      sha256: sha256Hex,
      addressLimit: parts.addressLimit,
      ...nonceSettings(parts.config),
    });
    return { signin: createSignin(parts, nonces), nonces };
  },
  register: registerAuthService,
};

/** Sign-in over the hot path's store, with adaptive MFA (and its GeoIP database, when configured). */
function createSignin(parts: ServiceParts, nonces: NonceService): SigninService {
  const { config, stores } = parts;
  return createSigninService({
    ...signinSettings(config),
    clock: parts.clock,
    verifier: parts.verifier,
    reader: stores.hot,
    accounts: stores.accounts,
    writer: stores.hot,
    audit: stores.audit,
    addressLimit: parts.addressLimit,
    nonces,
    accessTokens: parts.keyRing,
    opaqueTokens: parts.opaqueTokens,
    adaptiveMfa: createAdaptiveMfa({
      history: stores.mfa,
      geo: config.risk.geoip_db === undefined ? null : openGeoIp(config.risk.geoip_db),
      ...adaptiveMfaSettings(config),
    }),
    onAuditFailure: parts.onAuditFailure,
    events: parts.events,
  });
}
