import type { LoginResult, MfaChallengeResult } from "./model.ts";
import { OAuthError } from "./oauth-errors.ts";
import { one, required } from "./oauth-params.ts";
import type { OAuthClient, OAuthDeps, OAuthRequest, TokenAnswer } from "./oauth.ts";

/** The grants of the token endpoint, each one call of the sign-in, refresh or VerifyMfa service. */

export const GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
export const GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer";
export const GRANT_REFRESH_TOKEN = "refresh_token";
/** Completes a sign-in refused with `mfa_required` (our own grant; Auth0's `mfa-otp` is the model). */
export const GRANT_MFA = "urn:identity:params:oauth:grant-type:mfa";
export const OAUTH_GRANTS = [GRANT_TOKEN_EXCHANGE, GRANT_JWT_BEARER, GRANT_REFRESH_TOKEN, GRANT_MFA] as const;
export type OAuthGrant = (typeof OAUTH_GRANTS)[number];

export const TOKEN_TYPE_ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token";
export const TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt";
export const TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token";

/** Our access tokens carry no scopes: asking for any is refused rather than silently ignored. */
function checkScope(request: OAuthRequest): void {
  if (one(request, "scope") !== undefined)
    throw new OAuthError("invalid_scope", "this server issues access tokens without scopes; send no scope");
}

/** RFC 8693 §2.1 / RFC 8707: every `audience` and `resource` must be one this client may have tokens for. */
function checkTargets(request: OAuthRequest, client: OAuthClient): void {
  for (const name of ["audience", "resource"]) {
    for (const target of request.params.get(name) ?? []) {
      if (!client.audiences.includes(target))
        throw new OAuthError(
          "invalid_target",
          `${name} ${JSON.stringify(target)} is not one this client may obtain tokens for`,
        );
    }
  }
}

/**
 * The grant the authenticated client asked for (`grant_type`), if it is one this server knows and
 * the client may use, onto the service that decides it.
 */
export function createGrants(deps: OAuthDeps): (request: OAuthRequest, client: OAuthClient) => Promise<TokenAnswer> {
  function answerOf(result: LoginResult | MfaChallengeResult, issuedTokenType?: string): TokenAnswer {
    if ("kind" in result && result.kind === "mfa_required") {
      // Auth0's and Okta's shape: the client completes it with the MFA grant (or VerifyMfa).
      throw new OAuthError("mfa_required", "a second factor is required to complete this sign-in", 403, {
        mfa_token: result.challengeToken,
        required_mfa_methods: result.methods,
        mfa_expires_in: Math.max(0, Math.round((result.expiresAt.getTime() - deps.clock.now().getTime()) / 1000)),
      });
    }
    const login = result as LoginResult;
    return {
      access_token: login.accessToken,
      token_type: "Bearer",
      expires_in: login.expiresIn,
      refresh_token: login.refreshToken,
      ...(issuedTokenType === undefined ? {} : { issued_token_type: issuedTokenType }),
    };
  }

  async function tokenExchange(request: OAuthRequest, client: OAuthClient): Promise<TokenAnswer> {
    const subjectToken = required(request, "subject_token");
    const subjectType = required(request, "subject_token_type");
    if (subjectType !== TOKEN_TYPE_ID_TOKEN && subjectType !== TOKEN_TYPE_JWT) {
      throw new OAuthError(
        "invalid_request",
        `subject_token_type must be ${TOKEN_TYPE_ID_TOKEN} (or ${TOKEN_TYPE_JWT})`,
      );
    }
    // No delegation or impersonation (RFC 8693 §1.1): an actor token is refused, not ignored.
    if (one(request, "actor_token") !== undefined || one(request, "actor_token_type") !== undefined) {
      throw new OAuthError("invalid_request", "actor_token is not supported (no delegation)");
    }
    const requestedType = one(request, "requested_token_type");
    if (requestedType !== undefined && requestedType !== TOKEN_TYPE_ACCESS_TOKEN) {
      throw new OAuthError("invalid_request", `requested_token_type can only be ${TOKEN_TYPE_ACCESS_TOKEN}`);
    }
    checkTargets(request, client);
    checkScope(request);
    const result = await deps.signin.signinWithIdToken({
      idToken: subjectToken,
      nonce: one(request, "nonce"),
      client: request.client,
    });
    return answerOf(result, TOKEN_TYPE_ACCESS_TOKEN);
  }

  async function jwtBearer(request: OAuthRequest): Promise<TokenAnswer> {
    const assertion = required(request, "assertion");
    checkScope(request);
    return answerOf(
      await deps.signin.signinWithIdToken({ idToken: assertion, nonce: one(request, "nonce"), client: request.client }),
    );
  }

  async function refresh(request: OAuthRequest, client: OAuthClient): Promise<TokenAnswer> {
    const token = required(request, "refresh_token");
    checkScope(request);
    // The client's own key: a repeat within the grace window gets the same successor only from it.
    return answerOf(await deps.sessions.refresh(token, request.client, `oauth:${client.id}`));
  }

  async function mfa(request: OAuthRequest): Promise<TokenAnswer> {
    const challengeToken = required(request, "mfa_token");
    const code = required(request, "code");
    const trust = one(request, "trust_device");
    if (trust !== undefined && trust !== "true" && trust !== "false")
      throw new OAuthError("invalid_request", "trust_device is true or false");
    return answerOf(
      await deps.mfa.verify({
        challengeToken,
        method: one(request, "method") ?? "totp",
        code,
        trustDevice: trust === "true",
        client: request.client,
      }),
    );
  }

  return async function byGrantType(request, client) {
    const grant = required(request, "grant_type");
    if (!(OAUTH_GRANTS as readonly string[]).includes(grant))
      throw new OAuthError("unsupported_grant_type", `grant_type ${JSON.stringify(grant)} is not supported`);
    if (!client.grants.has(grant))
      throw new OAuthError("unauthorized_client", `this client may not use grant_type ${grant}`);
    switch (grant as OAuthGrant) {
      case GRANT_TOKEN_EXCHANGE:
        return tokenExchange(request, client);
      case GRANT_JWT_BEARER:
        return jwtBearer(request);
      case GRANT_REFRESH_TOKEN:
        return refresh(request, client);
      case GRANT_MFA:
        return mfa(request);
    }
  };
}
