import type { JWTPayload } from "jose";
import { DomainError } from "../core/errors.ts";
import { TENANT_ID_PLACEHOLDER } from "../core/model.ts";
import { sha256Hex } from "./sha256.ts";

/**
 * Provider quirks, by name: the places where a provider departs from plain OpenID Connect, each a
 * function the ID-token verifier calls. A new quirk goes here, with the provider it is for.
 */

const TENANT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Microsoft Entra (multi-tenant): whether the configured issuer holds the `{tenantid}` placeholder. */
export function isTenantTemplated(issuer: string): boolean {
  return issuer.includes(TENANT_ID_PLACEHOLDER);
}

/**
 * Microsoft Entra (multi-tenant): whether an (unverified) `iss` fits a configured issuer, exactly,
 * or with a tenant id where the placeholder stands. Used only to pick the provider.
 */
export function issuerFitsConfigured(configured: string, iss: string): boolean {
  if (!isTenantTemplated(configured)) return configured === iss;
  const [before, after] = configured.split(TENANT_ID_PLACEHOLDER) as [string, string];
  return (
    iss.startsWith(before) && iss.endsWith(after) && TENANT_ID.test(iss.slice(before.length, iss.length - after.length))
  );
}

/**
 * Microsoft Entra (multi-tenant): the issuer a verified token must carry, the configured one with
 * the token's own `tid` in place of the placeholder (so a token of one tenant cannot claim another).
 */
export function tenantIssuer(configured: string, payload: JWTPayload): string {
  if (!isTenantTemplated(configured)) return configured;
  const tid = payload["tid"];
  if (typeof tid !== "string" || !TENANT_ID.test(tid)) {
    throw new DomainError("id_token_claim_invalid", "the token's tid claim is missing or malformed");
  }
  return configured.replace(TENANT_ID_PLACEHOLDER, tid);
}

/**
 * Sign in with Apple and Firebase-style clients (`nonce_hashing: sha256`): the token carries the
 * hex SHA-256 of the nonce the client keeps and sends us; other providers carry it as sent.
 */
export function nonceInToken(nonceHashing: "none" | "sha256" | undefined, requestNonce: string): string {
  return nonceHashing === "sha256" ? sha256Hex(requestNonce) : requestNonce;
}
