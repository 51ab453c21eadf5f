import type { Interceptor } from "@connectrpc/connect";
import { DomainError } from "../core/errors.ts";
import type { SessionService } from "../core/sessions.ts";
import { kPrincipal } from "./context.ts";

export interface AuthPolicy {
  /** Services (type names) or methods ("Service/Method") that need an access token. */
  required: ReadonlySet<string>;
  /** Methods that accept one when sent (e.g. SignOut, which also takes a refresh token). */
  optional: ReadonlySet<string>;
}

/**
 * One interceptor for every authenticated RPC: reads `authorization: Bearer <access token>`,
 * verifies it (signature, issuer, audience, expiry) and that its session is live, and puts the
 * principal in the context for handlers. Requests without a valid token never reach them.
 */
export function authInterceptor(sessions: SessionService, policy: AuthPolicy): Interceptor {
  return (next) => async (req) => {
    const method = `${req.service.typeName}/${req.method.name}`;
    const required = policy.required.has(req.service.typeName) || policy.required.has(method);
    if (!required && !policy.optional.has(method)) return next(req);
    const header = req.header.get("authorization");
    if (header === null) {
      if (required)
        throw new DomainError("access_token_required", "send the access token as Authorization: Bearer <token>");
      return next(req);
    }
    const match = /^Bearer +([A-Za-z0-9._~+/-]+=*)$/i.exec(header.trim());
    if (match === null)
      throw new DomainError("access_token_invalid", "the Authorization header must be: Bearer <access token>");
    req.contextValues.set(kPrincipal, await sessions.authenticate(match[1]!));
    return next(req);
  };
}

/** The principal of an authenticated handler; a handler outside the policy is a wiring bug. */
export function principalOf(values: { get: <T>(key: { id: symbol; defaultValue: T }) => T }) {
  const principal = values.get(kPrincipal);
  if (principal === null) throw new DomainError("access_token_required", "this call needs an access token");
  return principal;
}
