import { timingSafeEqual } from "node:crypto";
import {
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
  type ProtectedHeaderParameters,
} from "jose";
import type { Clock } from "../core/clock.ts";
import { hasControlCharacters } from "../core/plain-text.ts";
import { DomainError } from "../core/errors.ts";
import type { ExternalIdentity, ProviderPolicy } from "../core/model.ts";
import type { IdTokenVerifier } from "../core/ports/signin.ts";
import { fromJose } from "./id-token-errors.ts";
import { isTenantTemplated, issuerFitsConfigured, nonceInToken, tenantIssuer } from "./provider-quirks.ts";
import type { KeyResolver } from "./remote-key-set.ts";
import { sha256Hex } from "./sha256.ts";
import { singleUse } from "../core/single-use.ts";

/** Everything needed to verify one provider's ID tokens. */
export interface ProviderVerification extends ProviderPolicy {
  /**
   * Exact `iss`. May contain `{tenantid}` for a multi-tenant issuer (Microsoft Entra's common
   * endpoint): the token's `iss` must then be this with its own `tid` in place, and
   * `claimAllowlist.tid` (required by the config) says which tenants may sign in.
   */
  issuer: string;
  /** Our client IDs at this provider (web, iOS, Android…); `aud` must contain one of them. */
  clientIds: readonly string[];
  /** Other audiences a token may also carry without being refused. */
  trustedAudiences: readonly string[];
  /** Pinned signature algorithms; never taken from the token. */
  algorithms: readonly string[];
  clockSkewSeconds: number;
  /** Reject tokens issued longer ago than this (on top of `exp`). */
  maxTokenAgeSeconds: number | null;
  /**
   * `true`: the request must carry the nonce and the token must hold it. `"server"`: besides,
   * the nonce must be one this service issued (POST /auth/id-token/nonce) and not yet spent.
   */
  requireNonce: boolean | "server";
  /** Whether a token may be used for more than one sign-in (default: no, each token once). */
  allowReplay?: boolean | undefined;
  /**
   * How the token carries the caller's nonce: as sent (`none`), or as the hex SHA-256 of it
   * (`sha256`: Sign in with Apple and Firebase-style clients put the hash in the authorization
   * request and keep the raw nonce, which they send us).
   */
  nonceHashing?: "none" | "sha256" | undefined;
  /** Claim name -> accepted values (e.g. Google `hd`, Entra `tid`). The claim must be present. */
  claimAllowlist: Readonly<Record<string, readonly string[]>>;
  keys: KeyResolver;
}

export interface IdTokenVerifierOptions {
  providers: readonly ProviderVerification[];
  clock: Clock;
  /** Longest compact token accepted, in bytes, checked before any parsing. */
  maxTokenBytes: number;
}

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
// OpenID Connect Core §2: sub is at most 255 ASCII characters. Control characters are refused.
const SANE_SUB = /^[\x21-\x7e]{1,255}$/;
const FORBIDDEN_ALGORITHMS = /^(none|HS\d+)$/i;

/**
 * ID-token verification after OpenID Connect Core 1.0 §3.1.3.7, stricter where it leaves room:
 * pinned algorithms, exact issuer, every audience trusted, `azp` required with several audiences,
 * `typ` must be JWT when present, `iat` required and bounded by the provider's maximum age.
 */
export function createIdTokenVerifier(options: IdTokenVerifierOptions): IdTokenVerifier {
  const byName = new Map(options.providers.map((p) => [p.name, p]));
  for (const p of options.providers) {
    const bad = p.algorithms.find((a) => FORBIDDEN_ALGORITHMS.test(a));
    if (bad !== undefined) throw new Error(`provider ${p.name}: algorithm ${bad} is not allowed`);
  }

  function pickProvider(token: string, requested: string | undefined): ProviderVerification {
    if (requested !== undefined) {
      const p = byName.get(requested);
      if (p === undefined) {
        throw new DomainError("provider_unknown", `provider "${clip(requested)}" is not configured`);
      }
      return p;
    }
    // No provider named: choose by the token's still unverified `iss`, then verify with that
    // provider's own keys and rules. The unverified value only selects configuration.
    const payload = decodeSegment(token.split(".")[1]!);
    const iss = typeof payload?.["iss"] === "string" ? payload["iss"] : undefined;
    const candidates = options.providers.filter((p) => iss !== undefined && issuerFitsConfigured(p.issuer, iss));
    if (candidates.length === 0) {
      throw new DomainError(
        "issuer_untrusted",
        "the token's issuer matches no configured provider; name the provider or check the issuer",
      );
    }
    if (candidates.length === 1) return candidates[0]!;
    const aud = audiences(payload?.["aud"]);
    const byAudience = candidates.filter((p) => p.clientIds.some((c) => aud.includes(c)));
    if (byAudience.length === 1) return byAudience[0]!;
    throw new DomainError(
      "provider_ambiguous",
      "several configured providers share this issuer; name the provider in the request",
    );
  }

  async function verify(
    token: string,
    request: { provider?: string | undefined; nonce?: string | undefined },
  ): Promise<ExternalIdentity> {
    const header = compactHeaderOf(token, options.maxTokenBytes);
    const provider = pickProvider(token, request.provider);
    checkHeader(provider, header, request.nonce);
    const payload = await verifySignature(token, provider, options);
    const issuer = checkClaims(provider, payload, request.nonce);
    return identityOf(provider, issuer, token, payload, request.nonce);
  }

  return { verify };
}

/** The token's protected header, once its size and compact-JWS shape are checked (nothing verified yet). */
function compactHeaderOf(token: string, maxTokenBytes: number): ProtectedHeaderParameters {
  if (Buffer.byteLength(token) > maxTokenBytes) {
    throw new DomainError("id_token_too_large", `id_token is longer than ${maxTokenBytes} bytes`);
  }
  if (!COMPACT_JWS.test(token)) {
    throw new DomainError("id_token_malformed", "id_token is not a compact JWS (header.payload.signature)");
  }
  try {
    return decodeProtectedHeader(token);
  } catch (e) {
    throw new DomainError("id_token_malformed", "id_token header is not valid JSON", { cause: e });
  }
}

/** What the provider demands before any key is used: the request's nonce, a pinned algorithm, an ID token's `typ`. */
function checkHeader(
  provider: ProviderVerification,
  header: ProtectedHeaderParameters,
  nonce: string | undefined,
): void {
  if (provider.requireNonce !== false && nonce === undefined) {
    throw new DomainError("nonce_required", `provider "${provider.name}" requires the nonce`);
  }
  if (typeof header.alg !== "string" || !provider.algorithms.includes(header.alg)) {
    throw new DomainError(
      "id_token_algorithm_not_allowed",
      `algorithm ${clip(String(header.alg))} is not allowed for provider "${provider.name}"`,
    );
  }
  if (header.typ !== undefined && !/^(application\/)?jwt$/i.test(header.typ)) {
    throw new DomainError("id_token_type_not_allowed", `token type ${clip(String(header.typ))} is not an ID token`);
  }
}

/** The signature (jose: with the provider's keys) and the registered claims jose checks. */
async function verifySignature(
  token: string,
  provider: ProviderVerification,
  options: IdTokenVerifierOptions,
): Promise<JWTPayload> {
  try {
    return (await jwtVerify(token, provider.keys, verifyOptions(provider, options))).payload;
  } catch (e) {
    // Several keys match (a provider publishing keys without kid): try each, keep the first
    // whose signature verifies. All other checks are those of the first attempt.
    if (!(e instanceof joseErrors.JWKSMultipleMatchingKeys)) throw fromJose(e, provider);
    return await verifyWithCandidates(token, e, options, provider);
  }
}

/**
 * The claims checked beyond jose's: the issuer (a templated one against the tenant the signed
 * token names), every audience trusted, `azp`, a sane `sub`, the nonce, the claim allowlist.
 * Returns the issuer.
 */
function checkClaims(provider: ProviderVerification, payload: JWTPayload, nonce: string | undefined): string {
  // A templated issuer is checked here, against the tenant the signed token names.
  const issuer = tenantIssuer(provider.issuer, payload);
  if (payload.iss !== issuer) {
    throw new DomainError("id_token_issuer_mismatch", `the token was not issued by provider "${provider.name}"`);
  }

  const aud = audiences(payload.aud);
  const trusted = new Set([...provider.clientIds, ...provider.trustedAudiences]);
  const untrusted = aud.find((a) => !trusted.has(a));
  if (untrusted !== undefined) {
    throw new DomainError("id_token_audience_mismatch", "the token is also addressed to an untrusted audience");
  }
  const azp = payload["azp"];
  if (azp !== undefined || aud.length > 1) {
    if (typeof azp !== "string" || !provider.clientIds.includes(azp)) {
      throw new DomainError(
        "id_token_audience_mismatch",
        "the token's authorized party (azp) is not one of our clients",
      );
    }
  }
  if (typeof payload.sub !== "string" || !SANE_SUB.test(payload.sub)) {
    throw new DomainError("id_token_claim_invalid", "the token's sub claim is missing or malformed");
  }
  if (nonce !== undefined) {
    const inToken = payload["nonce"];
    const expected = nonceInToken(provider.nonceHashing, nonce);
    if (typeof inToken !== "string" || !equalStrings(inToken, expected)) {
      throw new DomainError("id_token_nonce_mismatch", "the token's nonce does not match the request's nonce");
    }
  }
  for (const [claim, allowed] of Object.entries(provider.claimAllowlist)) {
    const value = payload[claim];
    if (typeof value !== "string" || !allowed.includes(value)) {
      throw new DomainError(
        "id_token_claim_not_allowed",
        `the token's ${claim} claim is not allowed for provider "${provider.name}"`,
      );
    }
  }
  return issuer;
}

/** The verified identity the core takes: the provider's policies, the claims we keep, what the sign-in spends. */
function identityOf(
  provider: ProviderVerification,
  issuer: string,
  token: string,
  payload: JWTPayload,
  nonce: string | undefined,
): ExternalIdentity {
  return {
    provider: {
      name: provider.name,
      signup: provider.signup,
      linkByEmail: provider.linkByEmail,
      trustUpstreamMfa: provider.trustUpstreamMfa,
      mfaAcrValues: provider.mfaAcrValues,
    },
    issuer,
    subject: payload.sub!,
    email: stringClaim(payload, "email"),
    emailVerified: booleanClaim(payload["email_verified"]),
    name: stringClaim(payload, "name"),
    preferredUsername: stringClaim(payload, "preferred_username"),
    phone: booleanClaim(payload["phone_number_verified"]) ? stringClaim(payload, "phone_number") : null,
    amr: Array.isArray(payload["amr"])
      ? payload["amr"].filter((m): m is string => typeof m === "string").map((m) => plainClaim("amr", m))
      : [],
    acr: stringClaim(payload, "acr"),
    use:
      provider.allowReplay === true
        ? null
        : singleUse(
            // Past this instant the token is refused as expired anyway: no need to remember it.
            new Date((payload.exp! + provider.clockSkewSeconds) * 1000),
            replayId(issuer, token, payload),
          ),
    // Matched against the token's nonce (checkClaims); the core checks that we issued it.
    serverNonce: provider.requireNonce === "server" ? nonce! : null,
  };
}

/**
 * What makes a verified token "the same token" for the replay check, whatever its spelling:
 * (issuer, jti) when it has one, else issuer + the signing input (`header.payload`, the bytes the
 * signature covers). Never the whole string: one signature has several spellings that verify —
 * the last base64url character's unused low bits are ignored by decoders, and an ECDSA (r, s) is
 * also valid as (r, n − s) — and each would otherwise be a fresh sign-in (issue 18). One SHA-256.
 */
function replayId(issuer: string, token: string, payload: JWTPayload): string {
  if (typeof payload.jti === "string" && payload.jti !== "") return `jti:${sha256Hex(`${issuer}\n${payload.jti}`)}`;
  return `sig:${sha256Hex(`${issuer}\n${token.slice(0, token.lastIndexOf("."))}`)}`;
}

async function verifyWithCandidates(
  token: string,
  candidates: joseErrors.JWKSMultipleMatchingKeys,
  options: IdTokenVerifierOptions,
  provider: ProviderVerification,
): Promise<JWTPayload> {
  let last: unknown = candidates;
  for await (const key of candidates) {
    try {
      const { payload } = await jwtVerify(token, key, verifyOptions(provider, options));
      return payload;
    } catch (e) {
      last = e;
      if (!(e instanceof joseErrors.JWSSignatureVerificationFailed)) break;
    }
  }
  throw fromJose(last, provider);
}

function verifyOptions(provider: ProviderVerification, options: IdTokenVerifierOptions) {
  return {
    algorithms: [...provider.algorithms],
    // A templated issuer has no single value; it is checked after the signature (checkClaims).
    ...(isTenantTemplated(provider.issuer) ? {} : { issuer: provider.issuer }),
    audience: [...provider.clientIds],
    clockTolerance: provider.clockSkewSeconds,
    currentDate: options.clock.now(),
    requiredClaims: ["iss", "sub", "aud", "exp", "iat"],
    // Without a configured maximum age, a very long one still makes jose refuse an `iat`
    // in the future (beyond the skew).
    maxTokenAge: provider.maxTokenAgeSeconds ?? 10 * 365 * 24 * 3600,
  };
}

function decodeSegment(segment: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function audiences(aud: unknown): string[] {
  if (typeof aud === "string") return [aud];
  return Array.isArray(aud) ? aud.filter((a): a is string => typeof a === "string") : [];
}

/** Booleans as JSON booleans or, as Apple and others send them, as "true"/"false" strings. */
function booleanClaim(value: unknown): boolean {
  return value === true || value === "true";
}

/**
 * A text claim we keep (e-mail, names, phone, acr, amr), or null when absent or over-long. A
 * claim with control characters refuses the whole token rather than being cleaned: the local
 * copy must be what the provider asserted, and no two distinct upstream values may collapse into
 * one (core/plain-text.ts). A correct provider never issues one; a token that carries one is
 * refused with the claim's name and never stored.
 */
function stringClaim(payload: JWTPayload, name: string): string | null {
  const v = payload[name];
  return typeof v === "string" && v.length > 0 && v.length <= 512 ? plainClaim(name, v) : null;
}

function plainClaim(name: string, value: string): string {
  if (hasControlCharacters(value)) {
    throw new DomainError("id_token_claim_invalid", `the token's ${name} claim contains control characters`, {
      detail: { claim: name },
    });
  }
  return value;
}

function equalStrings(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function clip(s: string): string {
  return s.length > 64 ? `${s.slice(0, 64)}…` : s;
}
