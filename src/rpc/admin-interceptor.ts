import type { Interceptor } from "@connectrpc/connect";
import { DomainError } from "../core/errors.ts";
import type { AdminKeyVerifier } from "../core/ports/admin.ts";
import { kAdminActor } from "./context.ts";

const HOW = "send an admin key as Authorization: Bearer adm_… or as x-admin-key: adm_…";

/**
 * Guards the admin API (`service`, AdminService's type name) and nothing else: every call needs
 * an admin key (`Authorization: Bearer adm_…` or `x-admin-key: adm_…`) whose SHA-256 is
 * configured; its name goes into the context as the actor. A user's access token is never an
 * admin credential. With no key configured, every call is refused (`admin_disabled`) — the admin
 * API is off by default rather than open.
 */
export function adminInterceptor(verifier: AdminKeyVerifier, options: { service: string }): Interceptor {
  return (next) => async (req) => {
    if (req.service.typeName !== options.service) return next(req);
    if (!verifier.enabled) {
      throw new DomainError("admin_disabled", "the admin API is off: no admin key is configured (admin.api_keys)");
    }
    const key = presentedKey(req.header, (text) => verifier.isAdminKey(text));
    const name = verifier.verify(key);
    if (name === null) throw new DomainError("admin_credential_invalid", "this admin key is not valid");
    req.contextValues.set(kAdminActor, { name });
    return next(req);
  };
}

/** The one admin key the request carries, in either header; anything else is refused. */
function presentedKey(header: Headers, isKey: (text: string) => boolean): string {
  const dedicated = header.get("x-admin-key");
  const authorization = header.get("authorization");
  let bearer: string | null = null;
  if (authorization !== null) {
    const match = /^Bearer +(\S+)$/i.exec(authorization.trim());
    if (match === null)
      throw new DomainError("admin_credential_required", `the Authorization header is not an admin key; ${HOW}`);
    bearer = match[1]!;
  }
  // Two credentials are a doubt, even when one of them is the right key: refuse rather than pick.
  if (dedicated !== null && bearer !== null) {
    throw new DomainError("admin_credential_invalid", `send one admin credential, not both headers; ${HOW}`);
  }
  if (dedicated !== null) {
    if (!isKey(dedicated.trim()))
      throw new DomainError("admin_credential_invalid", "x-admin-key does not hold an admin key (adm_…)");
    return dedicated.trim();
  }
  if (bearer === null) throw new DomainError("admin_credential_required", `this call needs an admin key; ${HOW}`);
  // Typically a user's access token: whoever the user is, it never opens the admin API.
  if (!isKey(bearer)) {
    throw new DomainError(
      "admin_credential_required",
      `the bearer credential is not an admin key (access tokens are never accepted here); ${HOW}`,
    );
  }
  return bearer;
}

/** The admin actor of an AdminService handler; absent means the interceptor is not wired: refuse. */
export function adminActorOf(values: { get: <T>(key: { id: symbol; defaultValue: T }) => T }): string {
  const actor = values.get(kAdminActor);
  if (actor === null) throw new DomainError("admin_credential_required", `this call needs an admin key; ${HOW}`);
  return actor.name;
}
