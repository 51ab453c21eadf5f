import type { Config } from "./schema.ts";

/**
 * The service's one public base URL and everything named after it: the `iss` of our access
 * tokens, the discovery document's `issuer` and `jwks_uri`, and the dev issuer's URL. Computed
 * once: `server.public_url` when configured, else where the server listens (known only once it
 * does, since the port may be 0). Before then nothing can be issued or discovered, and asking
 * throws rather than guessing a host (the bug this pins: tokens said `localhost`, discovery said
 * `127.0.0.1`, and verifiers fed the discovered issuer refused every token).
 */
export interface PublicUrls {
  /** Whether `server.public_url` is configured (else the listening address stands in for it). */
  readonly configured: boolean;
  /** The base URL, without a trailing slash. */
  base(): string;
  /** `iss` of our access tokens: `tokens.issuer`, else the base URL. */
  issuer(): string;
  jwksUri(): string;
  /** The built-in dev OpenID issuer (dev mode only). */
  devIssuer(): string;
  /** The server listens at `serverUrl`: the base URL, unless configured. */
  listening(serverUrl: string): void;
}

export function createPublicUrls(config: Pick<Config, "server" | "tokens">): PublicUrls {
  const configured = config.server.public_url?.replace(/\/+$/, "");
  let base = configured;
  const need = (): string => {
    if (base === undefined)
      throw new Error("the public URL is known once the server listens (or set server.public_url)");
    return base;
  };
  return {
    configured: configured !== undefined,
    base: need,
    issuer: () => config.tokens.issuer ?? need(),
    jwksUri: () => `${need()}/.well-known/jwks.json`,
    devIssuer: () => `${need()}/dev/oidc`,
    listening(serverUrl) {
      // An unspecified listening address is no address a client can use.
      base ??= serverUrl.replace(/^(https?):\/\/(0\.0\.0\.0|\[::\])(?=:)/, "$1://localhost");
    },
  };
}
