import { UserService } from "../../../gen/pb/identity/v1/user_service_pb.ts";
import { argon2Settings, passwordSettings, sessionSettings } from "../../config/to-deps.ts";
import { createPasswordService, type PasswordService } from "../../core/passwords.ts";
import { createSessionService, type SessionService } from "../../core/sessions.ts";
import { registerUserService } from "../../rpc/user-service.ts";
import { createPasswordStore } from "../../store/password-store.ts";
import { createArgon2PasswordHasher } from "../../tokens/password-hasher.ts";
import type { ServiceParts } from "../parts.ts";
import type { ServiceModule } from "../services.ts";

/**
 * UserService: the signed-in user's sessions, remembered devices and password. Every method
 * needs the user's access token. Its session service is also what authenticates every access
 * token (the auth interceptor) and what AuthService and the OAuth door refresh and end sessions with.
 */
export const userService: ServiceModule<
  { sessions: SessionService; passwords: PasswordService },
  { sessions: SessionService; passwords: PasswordService }
> = {
  service: UserService,
  access: { kind: "session" },
  build: (parts) => ({ sessions: createSessions(parts), passwords: createPasswords(parts) }),
  register: registerUserService,
};

/** Sessions: refresh and look-ups on the hot path's store, the rest on the session store. */
function createSessions(parts: ServiceParts): SessionService {
  const { stores } = parts;
  return createSessionService({
    ...sessionSettings(parts.config),
    clock: parts.clock,
    addressLimit: parts.addressLimit,
    store: {
      ...stores.sessions,
      refresh: stores.hot.refresh,
      findSession: stores.hot.findSession,
      findUser: stores.hot.findUser,
    },
    accessTokens: parts.keyRing,
    accessTokenVerifier: parts.keyRing,
    opaqueTokens: parts.opaqueTokens,
    trustedDevices: stores.trustedDevices,
  });
}

/** Passwords: Argon2id, and wrong current passwords reserved against the user's budget before the check. */
function createPasswords(parts: ServiceParts): PasswordService {
  const { config, stores } = parts;
  return createPasswordService({
    ...passwordSettings(config),
    clock: parts.clock,
    store: createPasswordStore(parts.database.client),
    hasher: createArgon2PasswordHasher(argon2Settings(config)),
    audit: stores.audit,
    budget: stores.attemptBudget,
    onAuditFailure: parts.onAuditFailure,
  });
}
