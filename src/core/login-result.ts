import type { LoginResult, UserWithPassword } from "./model.ts";
import { NO_PASSWORD_EXPIRY, type PasswordExpiryPolicy, passwordStatusOf } from "./password-policy.ts";
import type { AccessTokenIssuer } from "./ports/signing-keys.ts";

/**
 * The answer of every path that hands out tokens (sign-in, MFA completion, refresh): the access
 * token just issued for session `sessionId`, the refresh token already stored, and the user's
 * password status, made the same way on every path. Sign-in paths add `risk` and
 * `mfaCheckReason`. Synchronous on purpose: the caller awaits the token, so the hot path costs
 * no promise more than the signing itself.
 */
export function loginResultOf(
  deps: { accessTokens: AccessTokenIssuer; passwordExpiry?: PasswordExpiryPolicy | undefined },
  user: UserWithPassword,
  sessionId: string,
  accessToken: string,
  refreshToken: string,
  now: Date,
): LoginResult {
  return {
    user,
    passwordStatus: passwordStatusOf(user, now, deps.passwordExpiry ?? NO_PASSWORD_EXPIRY),
    accessToken,
    refreshToken,
    expiresIn: deps.accessTokens.ttlSeconds,
    sessionId,
  };
}
