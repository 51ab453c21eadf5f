import type { Clock } from "./clock.ts";
import type { AddressLimit } from "./address-limit.ts";
import { type ErrorCode, isDomainError } from "./errors.ts";
import type { ClientInfo } from "./model.ts";
import { createClientAuthentication, type ClientAuthMethod } from "./oauth-client-auth.ts";
import { invalidClient, notThisClients, oauthErrorOf, OAuthError } from "./oauth-errors.ts";
import { createGrants } from "./oauth-grants.ts";
import { one, required } from "./oauth-params.ts";
import type { SingleUseMarks } from "./ports/single-use.ts";
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

export {
  GRANT_JWT_BEARER,
  GRANT_MFA,
  GRANT_REFRESH_TOKEN,
  GRANT_TOKEN_EXCHANGE,
  OAUTH_GRANTS,
  type OAuthGrant,
  TOKEN_TYPE_ACCESS_TOKEN,
  TOKEN_TYPE_ID_TOKEN,
  TOKEN_TYPE_JWT,
} from "./oauth-grants.ts";
export {
  CLIENT_ASSERTION_ALGORITHMS,
  CLIENT_ASSERTION_TYPE,
  CLIENT_AUTH_METHODS,
  type ClientAuthMethod,
} from "./oauth-client-auth.ts";
export { OAuthError, type OAuthErrorCode, oauthErrorOf } from "./oauth-errors.ts";

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

/** Codes that mean "this token is no (longer a) live credential": revocation has nothing to do. */
const NOTHING_TO_REVOKE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "refresh_token_invalid",
  "refresh_token_expired",
  "refresh_token_reused",
  "session_revoked",
  "session_expired",
  "access_token_invalid",
  "access_token_expired",
  "user_disabled",
  "user_locked",
  "user_pending",
]);

/**
 * The door's three endpoints. Beside this file: client authentication (`oauth-client-auth.ts`),
 * the grants (`oauth-grants.ts`), the RFC errors (`oauth-errors.ts`) and form parameters (`oauth-params.ts`).
 */
export function createOAuthService(deps: OAuthDeps): OAuthService {
  const authenticateClient = createClientAuthentication(deps);
  const grant = createGrants(deps);

  /** The request as the authenticated client's: sessions, challenges and audit rows carry its id. */
  function asClient(request: OAuthRequest, client: OAuthClient): OAuthRequest {
    return { ...request, client: { ...request.client, oauthClientId: client.id } };
  }

  return {
    async token(unbound) {
      try {
        const client = await authenticateClient(unbound);
        return await grant(asClient(unbound, client), client);
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
          throw new OAuthError(
            "unsupported_token_type",
            `token_type_hint ${JSON.stringify(hint)} is not a token type this server revokes`,
          );
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
        const claims = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString("utf8")) as Record<
          string,
          unknown
        >;
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
