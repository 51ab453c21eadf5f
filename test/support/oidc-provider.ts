/**
 * Test harness: a REAL OpenID Connect provider for integration tests.
 *
 * Starts the certified `oidc-provider` (v9) on a loopback-only HTTP server (127.0.0.1, random port) and
 * obtains genuine ID tokens through a complete authorization-code + PKCE flow driven by `openid-client`
 * (v6). No browser is involved: the harness follows the provider's redirects itself with `fetch`
 * (`redirect: "manual"`), keeps the provider's cookies in a small per-flow cookie jar, answers the login
 * interaction with a tiny built-in interaction handler (no devInteractions forms), intercepts the final
 * redirect to the client's `redirect_uri` (which is never contacted) and redeems the code at the real
 * token endpoint.
 *
 * ```ts
 * const op = await startTestOidcProvider();
 * const { idToken, nonce } = await op.obtainIdToken({ sub: "alice", email: "alice@example.com" });
 * // ... hand `idToken` to the code under test; trust `op.issuer` / `op.clientId` / `op.jwksUri` ...
 * await op.rotateKeys();          // subsequent tokens are signed with a brand-new kid
 * await op.close();
 * ```
 *
 * Notes:
 * - Every `obtainIdToken` call uses a fresh cookie jar, so each call is a fresh login of `sub`
 *   (no SSO session is reused between calls).
 * - Signing keys are RS256 keys generated with jose at start; `rotateKeys` swaps in a new provider
 *   instance (same server, same port, same storage) whose keystore has a new key first and still
 *   contains every previous key, so older tokens keep verifying against the published JWKS.
 * - Nothing listens anywhere but 127.0.0.1; `close()` closes the server and all its connections.
 */
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { randomBytes, randomUUID } from "node:crypto";

import { exportJWK, generateKeyPair } from "jose";
import type { JWK } from "jose";
import Provider from "oidc-provider";
import type { Account, Adapter, AdapterPayload, Configuration, Interaction } from "oidc-provider";
import * as oidcClient from "openid-client";

/** A running test OpenID Provider. */
export interface TestOidcProvider {
  /** Issuer identifier, e.g. `http://127.0.0.1:PORT` — exactly the `iss` claim of issued tokens. */
  issuer: string;
  /** client_id of the single registered client — the `aud` of issued ID tokens. */
  clientId: string;
  /** Secret of the registered client (`client_secret_basic`). Rarely needed by tests. */
  clientSecret: string;
  /** The provider's JWKS endpoint (public keys only), e.g. `http://127.0.0.1:PORT/jwks`. */
  jwksUri: string;
  /**
   * Runs a full authorization-code + PKCE flow for `sub` and returns the genuine ID token.
   *
   * The account's claims (returned by the provider's `findAccount`) are:
   * - `sub`
   * - `email`: as given; defaults to `${sub}@example.com`; pass `null` to omit the claim entirely
   * - `email_verified`: as given; defaults to `true` (omitted when `email` is `null`)
   * - `name`: as given; defaults to `sub`
   *
   * Scopes `openid email profile` are requested and the claims are placed in the ID token itself.
   * The latest call for a given `sub` defines that account's claims.
   *
   * @param opts.nonce nonce to send (and expect back); a random one is generated when omitted.
   * @returns the compact-serialized ID token and the nonce it carries.
   */
  obtainIdToken(opts: {
    sub: string;
    email?: string | null;
    emailVerified?: boolean;
    name?: string;
    nonce?: string;
  }): Promise<{ idToken: string; nonce: string }>;
  /**
   * Rotates the provider's signing key: ID tokens issued afterwards carry a new `kid` that was not in
   * the JWKS before. Previous keys stay published, so previously issued tokens remain verifiable.
   * Issuer, port, client and stored state are unchanged.
   */
  rotateKeys(): Promise<void>;
  /** Stops the provider: closes the HTTP server and every open connection. Idempotent. */
  close(): Promise<void>;
}

/** Options for {@link startTestOidcProvider}. */
export interface StartTestOidcProviderOptions {
  /** client_id of the registered client (default `"test-client"`). */
  clientId?: string;
}

const SCOPE = "openid email profile";
const REDIRECT_URI = "http://127.0.0.1:1/cb"; // never contacted: the harness intercepts the redirect
const MAX_REDIRECTS = 10;

interface AccountProfile {
  email: string | null;
  emailVerified: boolean;
  name: string;
}

/**
 * Starts a real `oidc-provider` on `127.0.0.1:<random port>` with one registered confidential client
 * (`client_secret_basic`, PKCE required, redirect URI `http://127.0.0.1:1/cb`) and a fresh RS256
 * signing key.
 */
export async function startTestOidcProvider(opts: StartTestOidcProviderOptions = {}): Promise<TestOidcProvider> {
  const clientId = opts.clientId ?? "test-client";
  const clientSecret = randomBytes(32).toString("base64url");
  const cookieKeys = [randomBytes(32).toString("base64url")];
  const adapter = createMemoryAdapterFactory();
  const accounts = new Map<string, AccountProfile>();
  let signingKeys: JWK[] = [await generateSigningKey()];

  let current: { provider: Provider; handle: (req: IncomingMessage, res: ServerResponse) => Promise<void> } | undefined;

  const server: Server = createServer((req, res) => {
    const active = current;
    if (active === undefined) {
      res.writeHead(503).end();
      return;
    }
    const path = req.url ?? "/";
    const work = path.startsWith("/interaction/")
      ? handleInteraction(active.provider, req, res)
      : active.handle(req, res);
    work.catch((err: unknown) => {
      if (!res.headersSent) {
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
      }
      res.end(`test OIDC provider error: ${err instanceof Error ? err.message : String(err)}`);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });

  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;

  const findAccount = async (_ctx: unknown, sub: string): Promise<Account | undefined> => {
    const profile = accounts.get(sub);
    if (profile === undefined) return undefined;
    return {
      accountId: sub,
      claims: () => ({
        sub,
        ...(profile.email === null ? {} : { email: profile.email, email_verified: profile.emailVerified }),
        name: profile.name,
      }),
    };
  };

  const buildProvider = (): Provider => {
    const configuration: Configuration = {
      adapter,
      clients: [
        {
          client_id: clientId,
          client_secret: clientSecret,
          redirect_uris: [REDIRECT_URI],
          grant_types: ["authorization_code"],
          response_types: ["code"],
          token_endpoint_auth_method: "client_secret_basic",
          id_token_signed_response_alg: "RS256",
        },
      ],
      // Copies: the provider takes ownership of what it is given.
      jwks: { keys: signingKeys.map((key) => ({ ...key })) },
      cookies: { keys: cookieKeys },
      claims: {
        acr: null,
        sid: null,
        auth_time: null,
        iss: null,
        openid: ["sub"],
        email: ["email", "email_verified"],
        profile: ["name"],
      },
      scopes: ["openid", "email", "profile"],
      // Put scope-requested claims (email, name, ...) in the ID token, not only at userinfo.
      conformIdTokenClaims: false,
      // Our own interaction handler answers /interaction/:uid; no dev forms, no warning.
      features: { devInteractions: { enabled: false } },
      interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
      pkce: { required: () => true },
      // Explicit lifetimes (seconds); also keeps oidc-provider's "default ttl" notices out of test output.
      ttl: {
        AccessToken: 3600,
        AuthorizationCode: 60,
        IdToken: 3600,
        Interaction: 600,
        Session: 3600,
        Grant: 3600,
      },
      findAccount,
    };
    return new Provider(issuer, configuration);
  };

  const activate = (): void => {
    const provider = buildProvider();
    current = { provider, handle: provider.callback() };
  };

  /**
   * Minimal interaction handler. The login prompt is answered with `login_hint` as the account id and,
   * in the same step, a Grant for every requested OIDC scope (so no consent round-trip is needed).
   * A consent prompt (e.g. for claims requested via the `claims` parameter) is answered by granting.
   */
  async function handleInteraction(provider: Provider, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const details = await provider.interactionDetails(req, res);
    const { prompt, params } = details;
    const clientIdParam = String(params["client_id"]);

    if (prompt.name === "login") {
      const sub = params["login_hint"];
      if (typeof sub !== "string" || !accounts.has(sub)) {
        res.writeHead(400, { "content-type": "text/plain; charset=utf-8" });
        res.end("test OIDC provider: login_hint must name an account registered by obtainIdToken()");
        return;
      }
      const grantId = await grantAll(provider, details, sub, clientIdParam);
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: sub }, consent: { grantId } },
        { mergeWithLastSubmission: false },
      );
      return;
    }

    if (prompt.name === "consent") {
      const accountId = details.session?.accountId;
      if (accountId === undefined) throw new Error("consent prompt without an authenticated session");
      const grantId = await grantAll(provider, details, accountId, clientIdParam);
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      return;
    }

    throw new Error(`unsupported interaction prompt: ${prompt.name}`);
  }

  async function grantAll(
    provider: Provider,
    details: Interaction,
    accountId: string,
    client: string,
  ): Promise<string> {
    const existing = details.grantId === undefined ? undefined : await provider.Grant.find(details.grantId);
    const grant = existing ?? new provider.Grant({ accountId, clientId: client });
    const scope = details.params["scope"];
    if (typeof scope === "string") grant.addOIDCScope(scope);
    const missingClaims = details.prompt.details["missingOIDCClaims"];
    if (Array.isArray(missingClaims)) grant.addOIDCClaims(missingClaims.map(String));
    return grant.save();
  }

  activate();

  let closed = false;

  const obtainIdToken: TestOidcProvider["obtainIdToken"] = async ({ sub, email, emailVerified, name, nonce }) => {
    if (closed) throw new Error("test OIDC provider is closed");
    accounts.set(sub, {
      email: email === undefined ? `${sub}@example.com` : email,
      emailVerified: emailVerified ?? true,
      name: name ?? sub,
    });

    const config = await oidcClient.discovery(
      new URL(issuer),
      clientId,
      { client_secret: clientSecret },
      oidcClient.ClientSecretBasic(clientSecret),
      { execute: [oidcClient.allowInsecureRequests] },
    );

    const codeVerifier = oidcClient.randomPKCECodeVerifier();
    const state = oidcClient.randomState();
    const expectedNonce = nonce ?? oidcClient.randomNonce();
    const authorizationUrl = oidcClient.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT_URI,
      scope: SCOPE,
      code_challenge: await oidcClient.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: "S256",
      state,
      nonce: expectedNonce,
      login_hint: sub,
    });

    const callbackUrl = await followToRedirectUri(authorizationUrl);

    const tokens = await oidcClient.authorizationCodeGrant(config, callbackUrl, {
      pkceCodeVerifier: codeVerifier,
      expectedState: state,
      expectedNonce,
      idTokenExpected: true,
    });
    if (tokens.id_token === undefined) throw new Error("token response carried no id_token");
    return { idToken: tokens.id_token, nonce: expectedNonce };
  };

  const rotateKeys = async (): Promise<void> => {
    if (closed) throw new Error("test OIDC provider is closed");
    signingKeys = [await generateSigningKey(), ...signingKeys];
    activate();
  };

  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    current = undefined;
    const done = new Promise<void>((resolve, reject) => {
      server.close((err) => (err ? reject(err) : resolve()));
    });
    server.closeAllConnections();
    await done;
  };

  return {
    issuer,
    clientId,
    clientSecret,
    jwksUri: `${issuer}/jwks`,
    obtainIdToken,
    rotateKeys,
    close,
  };
}

/** A fresh RS256 private JWK with a unique kid, `alg` and `use` set. */
async function generateSigningKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: randomUUID(), alg: "RS256", use: "sig" };
}

/**
 * Plays the user agent: follows redirects from the authorization URL (carrying cookies) until the
 * provider redirects to the client's redirect_uri, and returns that (never requested) callback URL.
 */
async function followToRedirectUri(start: URL): Promise<URL> {
  const jar = new CookieJar();
  const redirectTarget = new URL(REDIRECT_URI);
  let url = start;
  for (let hop = 0; hop < MAX_REDIRECTS; hop++) {
    const cookie = jar.headerFor(url);
    const res = await fetch(url, { redirect: "manual", headers: cookie ? { cookie } : {} });
    jar.store(url, res.headers.getSetCookie());
    const location = res.headers.get("location");
    if (res.status < 300 || res.status >= 400 || location === null) {
      const body = await res.text();
      throw new Error(`test OIDC provider: unexpected HTTP ${res.status} at ${url.href}: ${body.slice(0, 500)}`);
    }
    await res.body?.cancel();
    const next = new URL(location, url);
    if (next.origin === redirectTarget.origin && next.pathname === redirectTarget.pathname) {
      const error = next.searchParams.get("error");
      if (error !== null) {
        const description = next.searchParams.get("error_description") ?? "";
        throw new Error(`test OIDC provider: authorization error ${error}: ${description}`);
      }
      return next;
    }
    url = next;
  }
  throw new Error(`test OIDC provider: more than ${MAX_REDIRECTS} redirects`);
}

/** Just enough of RFC 6265 for the provider's own cookies (name, value, path, expiry). */
class CookieJar {
  readonly #cookies = new Map<string, { name: string; value: string; path: string }>();

  store(requestUrl: URL, setCookieHeaders: string[]): void {
    for (const header of setCookieHeaders) {
      const [pair = "", ...attributes] = header.split(";");
      const eq = pair.indexOf("=");
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = requestUrl.pathname.slice(0, requestUrl.pathname.lastIndexOf("/")) || "/";
      let expired = value === "";
      for (const attribute of attributes) {
        const sep = attribute.indexOf("=");
        const key = (sep === -1 ? attribute : attribute.slice(0, sep)).trim().toLowerCase();
        const attrValue = sep === -1 ? "" : attribute.slice(sep + 1).trim();
        if (key === "path" && attrValue.startsWith("/")) path = attrValue;
        else if (key === "max-age" && Number(attrValue) <= 0) expired = true;
        else if (key === "expires" && Date.parse(attrValue) <= Date.now()) expired = true;
      }
      const id = `${name}\u0000${path}`;
      if (expired) this.#cookies.delete(id);
      else this.#cookies.set(id, { name, value, path });
    }
  }

  headerFor(url: URL): string {
    const matching = [...this.#cookies.values()]
      .filter(({ path }) => url.pathname === path || url.pathname.startsWith(path.endsWith("/") ? path : `${path}/`))
      .sort((a, b) => b.path.length - a.path.length);
    return matching.map(({ name, value }) => `${name}=${value}`).join("; ");
  }
}

/**
 * Per-harness in-memory storage adapter (the provider's built-in one warns on every instance).
 * Shared across provider instances created by `rotateKeys`, so state survives a rotation.
 */
function createMemoryAdapterFactory(): (model: string) => Adapter {
  const grantable = new Set([
    "AccessToken",
    "AuthorizationCode",
    "RefreshToken",
    "DeviceCode",
    "BackchannelAuthenticationRequest",
    "PreAuthorizedCode",
  ]);
  const entries = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  const sessionUids = new Map<string, string>();
  const userCodes = new Map<string, string>();
  const grantMembers = new Map<string, Set<string>>();

  const live = (key: string): AdapterPayload | undefined => {
    const entry = entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= Date.now()) {
      entries.delete(key);
      return undefined;
    }
    return entry.payload;
  };

  return (model: string): Adapter => {
    const keyFor = (id: string): string => `${model}:${id}`;
    return {
      async upsert(id, payload, expiresIn) {
        const expiresAt = typeof expiresIn === "number" ? Date.now() + expiresIn * 1000 : Number.POSITIVE_INFINITY;
        entries.set(keyFor(id), { payload, expiresAt });
        if (model === "Session" && typeof payload.uid === "string") sessionUids.set(payload.uid, id);
        if (typeof payload.userCode === "string") userCodes.set(payload.userCode, id);
        if (grantable.has(model) && typeof payload.grantId === "string") {
          const members = grantMembers.get(payload.grantId) ?? new Set<string>();
          members.add(keyFor(id));
          grantMembers.set(payload.grantId, members);
        }
      },
      async find(id) {
        return live(keyFor(id));
      },
      async findByUid(uid) {
        const id = sessionUids.get(uid);
        return id === undefined ? undefined : live(keyFor(id));
      },
      async findByUserCode(userCode) {
        const id = userCodes.get(userCode);
        return id === undefined ? undefined : live(keyFor(id));
      },
      async consume(id) {
        const payload = live(keyFor(id));
        if (payload !== undefined) payload.consumed = Math.floor(Date.now() / 1000);
      },
      async destroy(id) {
        entries.delete(keyFor(id));
      },
      async revokeByGrantId(grantId) {
        for (const key of grantMembers.get(grantId) ?? []) entries.delete(key);
        grantMembers.delete(grantId);
      },
    };
  };
}
