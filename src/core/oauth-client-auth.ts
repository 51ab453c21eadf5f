import { createHash } from "node:crypto";
import { UNLIMITED } from "./address-limit.ts";
import { DomainError, isDomainError } from "./errors.ts";
import { invalidClient, OAuthError } from "./oauth-errors.ts";
import { one } from "./oauth-params.ts";
import type { OAuthClient, OAuthDeps, OAuthRequest } from "./oauth.ts";
import { singleUse } from "./single-use.ts";

/** Client authentication at the OAuth door (RFC 6749 §2.3, RFC 7523 §3 `private_key_jwt`). */

export type ClientAuthMethod = "none" | "client_secret_basic" | "client_secret_post" | "private_key_jwt";
export const CLIENT_AUTH_METHODS: readonly ClientAuthMethod[] = [
  "none",
  "client_secret_basic",
  "client_secret_post",
  "private_key_jwt",
];
export const CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/**
 * Algorithms of client assertions: pinned, never taken from the token's header; asymmetric only
 * (no `none`, no HS*, which would make a public key a shared secret).
 */
export const CLIENT_ASSERTION_ALGORITHMS: readonly string[] = ["RS256", "PS256", "ES256", "ES384", "EdDSA"];

/** The `sub` of a JWT, unverified: only to find whose keys verify it. */
function unverifiedSubject(jwt: string): string | undefined {
  try {
    const payload = JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString("utf8")) as { sub?: unknown };
    return typeof payload.sub === "string" ? payload.sub : undefined;
  } catch {
    return undefined;
  }
}

/** Client authentication under the per-address limit: guessing secrets is limited as sign-ins are. */
export function createClientAuthentication(deps: OAuthDeps): (request: OAuthRequest) => Promise<OAuthClient> {
  async function authenticateClient(request: OAuthRequest): Promise<OAuthClient> {
    const attempt = await (deps.addressLimit?.admit(request.client.ip, "OAuthClientAuthentication") ?? UNLIMITED);
    try {
      const client = await authenticateClientOnce(request);
      attempt.settle();
      return client;
    } catch (e) {
      // invalid_client leaves no audit row: counted on this replica, as an unknown refresh token is.
      attempt.settle(e instanceof OAuthError ? new DomainError("invalid_request", e.description) : e, {
        recorded: false,
      });
      throw e;
    }
  }

  /**
   * RFC 6749 §2.3: exactly one way of authenticating, and the one the client is registered
   * with. A public client names itself with `client_id` and proves nothing.
   */
  async function authenticateClientOnce(request: OAuthRequest): Promise<OAuthClient> {
    const bodyId = one(request, "client_id");
    const bodySecret = one(request, "client_secret");
    const assertion = one(request, "client_assertion");
    const assertionType = one(request, "client_assertion_type");
    const basic = request.basic;
    if (basic === "malformed")
      throw invalidClient("the Authorization header is not valid HTTP Basic client authentication");
    const ways = [basic !== null, bodySecret !== undefined, assertion !== undefined].filter(Boolean).length;
    if (ways > 1)
      throw new OAuthError(
        "invalid_request",
        "use one client authentication method (Basic, client_secret or client_assertion)",
      );
    if (assertion !== undefined || assertionType !== undefined) {
      if (assertion === undefined || assertionType !== CLIENT_ASSERTION_TYPE) {
        throw new OAuthError(
          "invalid_request",
          `client_assertion needs client_assertion_type ${CLIENT_ASSERTION_TYPE}`,
        );
      }
      return authenticateByAssertion(bodyId, assertion);
    }
    if (basic !== null && bodyId !== undefined && bodyId !== basic.id)
      throw new OAuthError("invalid_request", "client_id differs from the Basic credentials");
    const id = basic?.id ?? bodyId;
    if (id === undefined)
      throw invalidClient("client authentication is required (client_id, and a secret for a confidential client)");
    const client = deps.clients.get(id);
    if (client === undefined) throw invalidClient("unknown client or wrong credentials");
    const used: ClientAuthMethod =
      basic !== null ? "client_secret_basic" : bodySecret !== undefined ? "client_secret_post" : "none";
    if (used !== client.authMethod) {
      throw invalidClient(
        client.authMethod === "none"
          ? "a public client sends no secret"
          : `this client authenticates with ${client.authMethod}`,
      );
    }
    if (used !== "none") {
      const secret = basic !== null ? basic.secret : bodySecret!;
      // The same answer as an unknown client: a caller learns nothing about which ids exist.
      if (client.secretSha256 === null || !deps.secrets.matches(secret, client.secretSha256))
        throw invalidClient("unknown client or wrong credentials");
    }
    return client;
  }

  /** RFC 7523 §3: the client is the assertion's `sub` (and `client_id`, when sent, must agree). */
  async function authenticateByAssertion(bodyId: string | undefined, assertion: string): Promise<OAuthClient> {
    const id = bodyId ?? unverifiedSubject(assertion);
    const client = id === undefined ? undefined : deps.clients.get(id);
    if (
      client === undefined ||
      client.authMethod !== "private_key_jwt" ||
      deps.assertions === undefined ||
      deps.marks === undefined
    ) {
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
    if (!(await deps.marks.markUsed(singleUse(checked.expiresAt, key))))
      throw invalidClient("this client assertion was already used (jti)");
    return client;
  }

  return authenticateClient;
}
