// Not jose's createRemoteJWKSet: it refetches inline once stale, fails in an outage, knows no discovery or our clock.
import {
  createLocalJWKSet,
  errors as joseErrors,
  type JSONWebKeySet,
  type JWSHeaderParameters,
  type FlattenedJWSInput,
} from "jose";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { Clock } from "../core/clock.ts";
import { DomainError } from "../core/errors.ts";

type KeyLookup = ReturnType<typeof createLocalJWKSet>;
export type KeyResolver = (header: JWSHeaderParameters, token: FlattenedJWSInput) => ReturnType<KeyLookup>;

export interface RemoteKeySetOptions {
  /** The provider's configured issuer; discovery must report exactly this. */
  issuer: string;
  /** Configured JWKS URL; when absent it comes from the issuer's discovery document. */
  jwksUri?: string | undefined;
  clock: Clock;
  fetch?: typeof fetch;
  /** Keys are refreshed in the background after this age. */
  freshSeconds: number;
  /** Keys older than this are no longer trusted when the provider cannot be reached. */
  maxStaleSeconds: number;
  /** An unknown `kid` triggers a refetch at most this often. */
  refetchCooldownSeconds: number;
  /** One HTTP request to the provider may take at most this long. */
  timeoutMs: number;
  onBackgroundError?: (error: unknown) => void;
  /** Told of every fetch of the keys (with discovery when it ran first), and whether it worked. */
  onFetch?: ((ok: boolean) => void) | undefined;
}

const MAX_DOCUMENT_BYTES = 512 * 1024;

/**
 * The signing keys of one OpenID provider, fetched from its JWKS (found through discovery unless
 * configured) and cached.
 *
 * - Fresh keys are used as they are; stale keys are used while a background refresh runs, and
 *   only up to `maxStaleSeconds`, so an outage of the provider does not stop sign-ins at once.
 * - An unknown `kid` refetches (the provider rotated), at most once per cooldown, so a flood of
 *   tokens with random kids cannot make us hammer the provider.
 * - Concurrent refreshes share one request. Every request has a timeout and a size cap: a slow
 *   or broken provider gives `provider_unavailable` quickly, never a hang.
 * - No URL is ever derived from a token: only from configuration and the verified discovery.
 */
export function createRemoteKeySet(options: RemoteKeySetOptions): KeyResolver {
  const doFetch = options.fetch ?? fetch;
  let lookup: KeyLookup | undefined;
  let fetchedAt = 0;
  let lastAttemptAt = -Infinity;
  let inflight: Promise<void> | undefined;
  let jwksUri = options.jwksUri;

  const nowMs = () => options.clock.now().getTime();

  function refresh(): Promise<void> {
    // Key fetches are rare (start, rotation, staleness), so they always go through the API's
    // global tracer, looked up each time: a no-op unless tracing is on.
    inflight ??= trace
      .getTracer("idtoken-signin")
      .startActiveSpan(
        "jwks fetch",
        { kind: SpanKind.CLIENT, attributes: { "identity.issuer": options.issuer } },
        async (span) => {
          lastAttemptAt = nowMs();
          try {
            jwksUri ??= await discoverJwksUri();
            const jwks = await getJson(jwksUri, "JWKS");
            if (!isJwks(jwks)) throw new Error("JWKS document has no keys array");
            lookup = createLocalJWKSet(jwks);
            fetchedAt = nowMs();
            options.onFetch?.(true);
          } catch (e) {
            options.onFetch?.(false);
            span.setStatus({ code: SpanStatusCode.ERROR, message: e instanceof Error ? e.message : String(e) });
            throw e;
          } finally {
            inflight = undefined;
            span.end();
          }
        },
      );
    return inflight;
  }

  async function discoverJwksUri(): Promise<string> {
    const base = options.issuer.replace(/\/$/, "");
    const doc = await getJson(`${base}/.well-known/openid-configuration`, "discovery document");
    if (typeof doc !== "object" || doc === null) throw new Error("discovery document is not an object");
    const { issuer, jwks_uri } = doc as { issuer?: unknown; jwks_uri?: unknown };
    // OpenID Connect Discovery 1.0 §4.3: the issuer in the document must be exactly ours.
    if (issuer !== options.issuer) {
      throw new Error(`discovery issuer ${JSON.stringify(issuer)} differs from configured issuer`);
    }
    if (typeof jwks_uri !== "string" || !/^https?:\/\//.test(jwks_uri)) {
      throw new Error("discovery document has no usable jwks_uri");
    }
    return jwks_uri;
  }

  async function getJson(url: string, what: string): Promise<unknown> {
    const response = await doFetch(url, {
      headers: { accept: "application/json" },
      redirect: "error",
      signal: AbortSignal.timeout(options.timeoutMs),
    });
    if (!response.ok) throw new Error(`${what} answered HTTP ${response.status}`);
    const length = Number(response.headers.get("content-length") ?? "0");
    if (length > MAX_DOCUMENT_BYTES) throw new Error(`${what} is too large`);
    // Read at most the cap, whatever the headers said: a body without content-length must not
    // grow memory until the timeout.
    const chunks: Uint8Array[] = [];
    let size = 0;
    const body: AsyncIterable<Uint8Array> | Uint8Array[] = response.body ?? []; // fetch's types: chunks of `any`
    for await (const chunk of body) {
      size += chunk.byteLength;
      if (size > MAX_DOCUMENT_BYTES) throw new Error(`${what} is too large`);
      chunks.push(chunk);
    }
    return JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
  }

  function unavailable(cause: unknown): DomainError {
    return new DomainError(
      "provider_unavailable",
      "the identity provider's signing keys cannot be fetched right now; try again shortly",
      { cause },
    );
  }

  return async function resolveKey(header, token) {
    const age = (nowMs() - fetchedAt) / 1000;
    if (lookup === undefined || age > options.maxStaleSeconds) {
      try {
        await refresh();
      } catch (e) {
        throw unavailable(e);
      }
    } else if (
      age > options.freshSeconds &&
      inflight === undefined &&
      (nowMs() - lastAttemptAt) / 1000 >= options.refetchCooldownSeconds
    ) {
      refresh().catch((e: unknown) => options.onBackgroundError?.(e));
    }
    try {
      return await lookup!(header, token);
    } catch (e) {
      if (!(e instanceof joseErrors.JWKSNoMatchingKey)) throw e;
      const sinceAttempt = (nowMs() - lastAttemptAt) / 1000;
      if (sinceAttempt >= options.refetchCooldownSeconds || inflight !== undefined) {
        try {
          await refresh();
        } catch (refreshError) {
          throw unavailable(refreshError);
        }
        return lookup!(header, token);
      }
      throw e;
    }
  };
}

function isJwks(value: unknown): value is JSONWebKeySet {
  return typeof value === "object" && value !== null && Array.isArray((value as { keys?: unknown }).keys);
}
