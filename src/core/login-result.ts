import type { LoginResult, UserWithPassword } from "./model.ts";
import { NO_PASSWORD_EXPIRY, type PasswordExpiryPolicy, passwordStatusOf } from "./password-policy.ts";
import type { AccessTokenIssuer } from "./ports/signing-keys.ts";

/**
 * The answer of every path that hands out tokens (sign-in, MFA completion, refresh): an access
 * token for `session`, the refresh token already stored, and the user's password status, each
 * computed the same way on every path. Sign-in paths add `risk` and `mfaCheckReason` to it.
 */
export async function loginResultFor(
  deps: { accessTokens: AccessTokenIssuer; passwordExpiry?: PasswordExpiryPolicy | undefined },
  user: UserWithPassword,
  session: { id: string; amr: readonly string[]; provider: string | null },
  refreshToken: string,
  now: Date,
): Promise<LoginResult> {
  const accessToken = await deps.accessTokens.issue({ userId: user.id, sessionId: session.id, amr: session.amr, provider: session.provider }, now);
  return {
    user,
    passwordStatus: passwordStatusOf(user, now, deps.passwordExpiry ?? NO_PASSWORD_EXPIRY),
    accessToken,
    refreshToken,
    expiresIn: deps.accessTokens.ttlSeconds,
    sessionId: session.id,
  };
}
