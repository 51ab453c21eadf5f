import { OAuthError } from "./oauth-errors.ts";
import type { OAuthRequest } from "./oauth.ts";

/** The one value of a single-valued parameter (RFC 6749 §3.2: sent at most once). */
export function one(request: OAuthRequest, name: string): string | undefined {
  const values = request.params.get(name);
  if (values === undefined) return undefined;
  if (values.length > 1) throw new OAuthError("invalid_request", `${name} was sent more than once`);
  return values[0];
}

/** The one value of a parameter the request must carry. */
export function required(request: OAuthRequest, name: string): string {
  const value = one(request, name);
  if (value === undefined) throw new OAuthError("invalid_request", `${name} is required`);
  return value;
}
