import type { Clock } from "./clock.ts";
import { type AddressLimit, UNLIMITED } from "./address-limit.ts";
import { DomainError, isDomainError, type ErrorCode } from "./errors.ts";
import { createHash } from "node:crypto";
import type { ClientInfo, LoginResult, MfaChallengeResult } from "./model.ts";
import type { SingleUseMarks } from "./ports/single-use.ts";
import { singleUse } from "./single-use.ts";
import type { MfaService } from "./mfa.ts";
import type { SessionService } from "./sessions.ts";
import type { SigninService } from "./signin.ts";

/**
 * The OAuth 2.0 door (RFC 6749 token endpoint, RFC 8693 token exchange, RFC 7523 JWT bearer,
 * RFC 7009 revocation, RFC 7662 introspection) onto the same core as the RPCs: every grant is
 * one call of the sign-in, refresh or VerifyMfa service, so verification, risk, MFA, limits,
 * audit and reuse detection are theirs; this file decides only client authentication, which
 * grant a client may use, the RFC parameters, and how a domain error reads as an RFC error.
 */

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

export type ClientAuthMethod = "none" | "client_secret_basic" | "client_secret_post" | "private_key_jwt";
export const CLIENT_AUTH_METHODS: readonly ClientAuthMethod[] = ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"];
export const CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/**
 * Algorithms of client assertions: pinned, never taken from the token's header; asymmetric only
 * (no `none`, no HS*, which would make a public key a shared secret).
 */
export const CLIENT_ASSERTION_ALGORITHMS: readonly string[] = ["RS256", "PS256", "ES256", "ES384", "EdDSA"];

/** A registered client (`oauth.clients.<id>`). */
export interface OAuthClient {
  id: string;
  /** `none`: a public client (no secret); otherwise how it must authenticate. */
  authMethod: ClientAuthMethod;
  /** SHA-256 of the secret (confidential clients); only the hash is configured. */
  secretSha256: Uint8Array | null;
  grants: ReadonlySet<string>;
  /** Audiences it may ask for with `audience`/`resource` (a subset of tokens.audience). */
  audiences: readonly string[];
}

/** Compares a presented client secret with the configured hash (tokens/client-secrets.ts). */
export interface ClientSecretCheck {
  matches(secret: string, sha256: Uint8Array): boolean;
}

/** Verifies a `private_key_jwt` client assertion (tokens/client-assertions.ts); throws a DomainError. */
export interface ClientAssertionCheck {
  verify(clientId: string, assertion: string, now: Date): Promise<{ jti: string; expiresAt: Date }>;
}

/** RFC 6749 §5.2 error codes, RFC 8693 `invalid_target`, and `mfa_required` (the Auth0/Okta shape). */
export type OAuthErrorCode =
  | "invalid_request"
  | "invalid_client"
  | "invalid_grant"
  | "unauthorized_client"
  | "unsupported_grant_type"
  | "invalid_scope"
  | "invalid_target"
  | "unsupported_token_type"
  | "mfa_required"
  | "rate_limited"
  | "temporarily_unavailable"
  | "server_error";

/** A refusal in the RFC's shape: `error`, `error_description`, the HTTP status, and any extra members. */
export class OAuthError extends Error {
  override readonly name = "OAuthError";
  readonly error: OAuthErrorCode;
  readonly description: string;
  readonly status: number;
  readonly extra: Readonly<Record<string, unknown>>;
  constructor(
    error: OAuthErrorCode,
    description: string,
    status = 400,
    extra: Readonly<Record<string, unknown>> = {},
    options?: { cause?: unknown },
  ) {
    super(description, options);
    this.error = error;
    this.description = description;
    this.status = status;
    this.extra = extra;
  }
}

/**
 * One request to an OAuth endpoint: its form parameters (each name with every value sent, empty
 * values already dropped as RFC 6749 §3.1 says), the HTTP Basic credentials if any, and the caller.
 */
export interface OAuthRequest {
  params: ReadonlyMap<string, readonly string[]>;
  /** `Authorization: Basic` already split and form-decoded; "malformed" when it could not be. */
  basic: { id: string; secret: string } | "malformed" | null;
  client: ClientInfo;
}

/** The successful token response (RFC 6749 §5.1; RFC 8693 §2.2.1 adds `issued_token_type`). */
export interface TokenAnswer {
  access_token: string;
  token_type: "Bearer";
  expires_in: number;
  refresh_token: string;
  issued_token_type?: string;
}

/** The introspection response (RFC 7662 §2.2). */
export type IntrospectionAnswer = { active: false } | ({ active: true } & Record<string, unknown>);

export interface OAuthDeps {
  clock: Clock;
  clients: ReadonlyMap<string, OAuthClient>;
  secrets: ClientSecretCheck;
  /** private_key_jwt: the assertion's signature and claims, and its `jti` recorded once. */
  assertions?: ClientAssertionCheck | undefined;
  marks?: SingleUseMarks | undefined;
  /**
   * The per-address limit, for client authentication (wrong secrets, bad assertions count as
   * failures of this replica); the grants themselves are limited by the services they call.
   */
  addressLimit?: AddressLimit | undefined;
  signin: Pick<SigninService, "signinWithIdToken">;
  sessions: Pick<SessionService, "refresh" | "authenticate" | "signOut" | "liveRefreshToken">;
  mfa: Pick<MfaService, "verify">;
}

export interface OAuthService {
  token(request: OAuthRequest): Promise<TokenAnswer>;
  /** RFC 7009: ends the session behind a refresh (or access) token; an unknown token is no error. */
  revoke(request: OAuthRequest): Promise<void>;
  /**
   * RFC 7662, confidential clients only: whether an access token's session is still live (any
   * client's), or whether a refresh token of the caller's own is (another client's: inactive).
   */
  introspect(request: OAuthRequest): Promise<IntrospectionAnswer>;
}

/** Domain codes a client sends as a request problem rather than a bad grant. */
const REQUEST_PROBLEMS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "invalid_request", "invalid_characters", "request_too_large", "id_token_required", "refresh_token_required",
  "challenge_token_required", "mfa_code_required", "nonce_required",
]);

/**
 * A domain error as the RFC error the token endpoint answers. Everything wrong with the grant
 * itself (the token, the account, the session, a replayed subject token) is `invalid_grant`; the
 * domain code stays in the description's reach for logs, not in `error`.
 */
export function oauthErrorOf(e: unknown): OAuthError {
  if (e instanceof OAuthError) return e;
  if (!isDomainError(e)) return new OAuthError("server_error", "internal error", 500, {}, { cause: e });
  if (e.code === "rate_limited") {
    const retry = e.detail?.["retry_after_seconds"];
    return new OAuthError("rate_limited", e.message, 429, retry === undefined ? {} : { retry_after_seconds: Number(retry) }, { cause: e });
  }
  if (e.code === "provider_unavailable" || e.code === "unavailable") return new OAuthError("temporarily_unavailable", e.message, 503, {}, { cause: e });
  if (e.code === "internal") return new OAuthError("server_error", "internal error", 500, {}, { cause: e });
  if (REQUEST_PROBLEMS.has(e.code)) return new OAuthError("invalid_request", e.message, 400, {}, { cause: e });
  return new OAuthError("invalid_grant", e.message, 400, { error_code: e.code }, { cause: e });
}

/** The `sub` of a JWT, unverified: only to find whose keys verify it. */
function unverifiedSubject(jwt: string): string | undefined {
  try {
    const payload = JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString("utf8")) as { sub?: unknown };
    return typeof payload.sub === "string" ? payload.sub : undefined;
  } catch {
    return undefined;
  }
}

/** RFC 7009 §2.1: the token presented for revocation was not issued to the client asking. */
function notThisClients(): OAuthError {
  return new OAuthError("unauthorized_client", "this token was not issued to this client; it was not revoked");
}

function invalidClient(description: string): OAuthError {
  return new OAuthError("invalid_client", description, 401);
}

export function createOAuthService(deps: OAuthDeps): OAuthService {
  /** The one value of a single-valued parameter (RFC 6749 §3.2: sent at most once). */
  function one(request: OAuthRequest, name: string): string | undefined {
    const values = request.params.get(name);
    if (values === undefined) return undefined;
    if (values.length > 1) throw new OAuthError("invalid_request", `${name} was sent more than once`);
    return values[0];
  }

  function required(request: OAuthRequest, name: string): string {
    const value = one(request, name);
    if (value === undefined) throw new OAuthError("invalid_request", `${name} is required`);
    return value;
  }

  /**
   * RFC 6749 §2.3: exactly one way of authenticating, and the one the client is registered
   * with. A public client names itself with `client_id` and proves nothing.
   */
  /** Client authentication under the per-address limit: guessing secrets is limited as sign-ins are. */
  async function authenticateClient(request: OAuthRequest): Promise<OAuthClient> {
    const attempt = await (deps.addressLimit?.admit(request.client.ip, "OAuthClientAuthentication") ?? UNLIMITED);
    try {
      const client = await authenticateClientOnce(request);
      attempt.settle();
      return client;
    } catch (e) {
      // invalid_client leaves no audit row: counted on this replica, as an unknown refresh token is.
      attempt.settle(e instanceof OAuthError ? new DomainError("invalid_request", e.description) : e, { recorded: false });
      throw e;
    }
  }

  async function authenticateClientOnce(request: OAuthRequest): Promise<OAuthClient> {
    const bodyId = one(request, "client_id");
    const bodySecret = one(request, "client_secret");
    const assertion = one(request, "client_assertion");
    const assertionType = one(request, "client_assertion_type");
    const basic = request.basic;
    if (basic === "malformed") throw invalidClient("the Authorization header is not valid HTTP Basic client authentication");
    const ways = [basic !== null, bodySecret !== undefined, assertion !== undefined].filter(Boolean).length;
    if (ways > 1) throw new OAuthError("invalid_request", "use one client authentication method (Basic, client_secret or client_assertion)");
    if (assertion !== undefined || assertionType !== undefined) {
      if (assertion === undefined || assertionType !== CLIENT_ASSERTION_TYPE) {
        throw new OAuthError("invalid_request", `client_assertion needs client_assertion_type ${CLIENT_ASSERTION_TYPE}`);
      }
      return authenticateByAssertion(bodyId, assertion);
    }
    if (basic !== null && bodyId !== undefined && bodyId !== basic.id) throw new OAuthError("invalid_request", "client_id differs from the Basic credentials");
    const id = basic?.id ?? bodyId;
    if (id === undefined) throw invalidClient("client authentication is required (client_id, and a secret for a confidential client)");
    const client = deps.clients.get(id);
    if (client === undefined) throw invalidClient("unknown client or wrong credentials");
    const used: ClientAuthMethod = basic !== null ? "client_secret_basic" : bodySecret !== undefined ? "client_secret_post" : "none";
    if (used !== client.authMethod) {
      throw invalidClient(client.authMethod === "none" ? "a public client sends no secret" : `this client authenticates with ${client.authMethod}`);
    }
    if (used !== "none") {
      const secret = basic !== null ? basic.secret : bodySecret!;
      // The same answer as an unknown client: a caller learns nothing about which ids exist.
      if (client.secretSha256 === null || !deps.secrets.matches(secret, client.secretSha256)) throw invalidClient("unknown client or wrong credentials");
    }
    return client;
  }

  /** RFC 7523 §3: the client is the assertion's `sub` (and `client_id`, when sent, must agree). */
  async function authenticateByAssertion(bodyId: string | undefined, assertion: string): Promise<OAuthClient> {
    const id = bodyId ?? unverifiedSubject(assertion);
    const client = id === undefined ? undefined : deps.clients.get(id);
    if (client === undefined || client.authMethod !== "private_key_jwt" || deps.assertions === undefined || deps.marks === undefined) {
      throw invalidClient("unknown client, or it does not authenticate with private_key_jwt");
    }
    const now = deps.clock.now();
    let checked: { jti: string; expiresAt: Date };
    try {
      checked = await deps.assertions.verify(client.id, assertion, now);
    } catch (e) {
      if (isDomainError(e) && e.code === "invalid_request") throw invalidClient(e.message);
      throw e;
    }
    const key = `client_assertion:${createHash("sha256").update(`${client.id}\0${checked.jti}`).digest("base64url")}`;
    if (!(await deps.marks.markUsed(singleUse(checked.expiresAt, key)))) throw invalidClient("this client assertion was already used (jti)");
    return client;
  }

  /** RFC 8693 §2.1 / RFC 8707: every `audience` and `resource` must be one this client may have tokens for. */
  function checkTargets(request: OAuthRequest, client: OAuthClient): void {
    for (const name of ["audience", "resource"]) {
      for (const target of request.params.get(name) ?? []) {
        if (!client.audiences.includes(target)) throw new OAuthError("invalid_target", `${name} ${JSON.stringify(target)} is not one this client may obtain tokens for`);
      }
    }
  }

  /** Our access tokens carry no scopes: asking for any is refused rather than silently ignored. */
  function checkScope(request: OAuthRequest): void {
    if (one(request, "scope") !== undefined) throw new OAuthError("invalid_scope", "this server issues access tokens without scopes; send no scope");
  }

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
      throw new OAuthError("invalid_request", `subject_token_type must be ${TOKEN_TYPE_ID_TOKEN} (or ${TOKEN_TYPE_JWT})`);
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
    const result = await deps.signin.signinWithIdToken({ idToken: subjectToken, nonce: one(request, "nonce"), client: request.client });
    return answerOf(result, TOKEN_TYPE_ACCESS_TOKEN);
  }

  async function jwtBearer(request: OAuthRequest): Promise<TokenAnswer> {
    const assertion = required(request, "assertion");
    checkScope(request);
    return answerOf(await deps.signin.signinWithIdToken({ idToken: assertion, nonce: one(request, "nonce"), client: request.client }));
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
    if (trust !== undefined && trust !== "true" && trust !== "false") throw new OAuthError("invalid_request", "trust_device is true or false");
    return answerOf(await deps.mfa.verify({
      challengeToken,
      method: one(request, "method") ?? "totp",
      code,
      trustDevice: trust === "true",
      client: request.client,
    }));
  }

  /** The request as the authenticated client's: sessions, challenges and audit rows carry its id. */
  function asClient(request: OAuthRequest, client: OAuthClient): OAuthRequest {
    return { ...request, client: { ...request.client, oauthClientId: client.id } };
  }

  async function token(unbound: OAuthRequest): Promise<TokenAnswer> {
    const client = await authenticateClient(unbound);
    const request = asClient(unbound, client);
    const grant = required(request, "grant_type");
    if (!(OAUTH_GRANTS as readonly string[]).includes(grant)) throw new OAuthError("unsupported_grant_type", `grant_type ${JSON.stringify(grant)} is not supported`);
    if (!client.grants.has(grant)) throw new OAuthError("unauthorized_client", `this client may not use grant_type ${grant}`);
    switch (grant as OAuthGrant) {
      case GRANT_TOKEN_EXCHANGE: return tokenExchange(request, client);
      case GRANT_JWT_BEARER: return jwtBearer(request);
      case GRANT_REFRESH_TOKEN: return refresh(request, client);
      case GRANT_MFA: return mfa(request);
    }
  }

  /** Codes that mean "this token is no (longer a) live credential": revocation has nothing to do. */
  const NOTHING_TO_REVOKE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
    "refresh_token_invalid", "refresh_token_expired", "refresh_token_reused", "session_revoked", "session_expired",
    "access_token_invalid", "access_token_expired", "user_disabled", "user_locked", "user_pending",
  ]);

  return {
    async token(request) {
      try {
        return await token(request);
      } catch (e) {
        throw oauthErrorOf(e);
      }
    },

    async revoke(unbound) {
      try {
        const client = await authenticateClient(unbound);
        const request = asClient(unbound, client);
        const token = required(request, "token");
        const hint = one(request, "token_type_hint");
        // RFC 7009 §2.2.1: unsupported_token_type is for a type the server cannot revoke at all.
        if (hint !== undefined && hint !== "refresh_token" && hint !== "access_token") {
          throw new OAuthError("unsupported_token_type", `token_type_hint ${JSON.stringify(hint)} is not a token type this server revokes`);
        }
        try {
          if (token.startsWith("rt_")) {
            await deps.sessions.signOut({ refreshToken: token }, false, request.client);
          } else {
            const principal = await deps.sessions.authenticate(token);
            if (principal.session?.clientId !== client.id) throw notThisClients();
            await deps.sessions.signOut({ principal }, false, request.client);
          }
        } catch (e) {
          // RFC 7009 §2.1: a token issued to another client (or to the service's own API) is
          // refused, not revoked, and the client is told.
          if (isDomainError(e) && e.code === "refresh_token_client_mismatch") throw notThisClients();
          // RFC 7009 §2.2: an invalid token (or one already ended) answers 200 all the same.
          if (!(isDomainError(e) && NOTHING_TO_REVOKE.has(e.code))) throw e;
        }
      } catch (e) {
        throw oauthErrorOf(e);
      }
    },

    async introspect(request) {
      try {
        const client = await authenticateClient(request);
        if (client.authMethod === "none") throw invalidClient("introspection is for confidential clients");
        const token = required(request, "token");
        // RFC 7662 §2.1: `token_type_hint` is only a hint; our tokens say what they are by their shape.
        if (token.startsWith("rt_")) {
          // Only the caller's own: another client's refresh token reads as inactive (§2.2 lets the
          // server say no more than that to a caller not entitled to know).
          const live = await deps.sessions.liveRefreshToken(token, client.id);
          if (live === null) return { active: false };
          return {
            active: true,
            token_type: "refresh_token",
            client_id: client.id,
            sub: live.session.userId,
            sid: live.session.id,
            exp: Math.floor(live.tokenExpiresAt.getTime() / 1000),
          };
        }
        let principal;
        try {
          principal = await deps.sessions.authenticate(token);
        } catch (e) {
          if (isDomainError(e) && NOTHING_TO_REVOKE.has(e.code)) return { active: false };
          throw e;
        }
        // The signature, expiry and the session were just checked: the claims can be read as they are.
        const claims = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString("utf8")) as Record<string, unknown>;
        return {
          active: true,
          token_type: "Bearer",
          sub: principal.userId,
          sid: principal.sessionId,
          // The OAuth client the session is bound to; absent: a token of the service's own API.
          ...(principal.session?.clientId == null ? {} : { client_id: principal.session.clientId }),
          amr: [...principal.amr],
          iss: claims["iss"],
          aud: claims["aud"],
          exp: claims["exp"],
          iat: claims["iat"],
          jti: claims["jti"],
        };
      } catch (e) {
        throw oauthErrorOf(e);
      }
    },
  };
}
