/**
 * The browser half of test/e2e/browser.e2e.test.ts: bundled at test time (never committed as a
 * bundle) and loaded by a page served from another origin than the API, so every call below is a
 * real cross-origin request from Chromium, with preflights, CORS response checks and exposed
 * headers enforced by the browser, not by us.
 *
 * It installs `globalThis.identityBrowserClient`; the test drives it with `page.evaluate` and gets
 * plain JSON back (errors are caught here and described, so Node can assert on them).
 */
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { ErrorInfoSchema } from "../../../gen/pb/google/rpc/error_details_pb.ts";
import { AuthService } from "../../../gen/pb/identity/v1/auth_service_pb.ts";
import { UserService } from "../../../gen/pb/identity/v1/user_service_pb.ts";

/** A failed call as the browser saw it. */
export interface CallError {
  /** The error's class: `ConnectError` for RPCs, `TypeError` for a fetch the browser blocked. */
  name: string;
  message: string;
  /** ConnectError only: the numeric code and its name (`InvalidArgument`, …). */
  code?: number;
  codeName?: string;
  /** The `google.rpc.ErrorInfo` detail, decoded in the browser. */
  reason?: string;
  domain?: string;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: CallError };

export interface LoginSummary {
  userId: string;
  requiresMfa: boolean;
  tokenType: string;
  hasAccessToken: boolean;
  hasRefreshToken: boolean;
  email: string;
}

export interface UserSummary {
  id: string;
  email: string;
}

export interface HttpSummary {
  status: number;
  /** Read through the CORS-filtered response: only safelisted and exposed headers are visible. */
  requestId: string | null;
  body: Record<string, unknown>;
}

export interface SigninResult {
  /** The ID tokens, minted by the page itself through the dev issuer's plain JSON endpoint. */
  mint: Outcome<{ status: number; provider: unknown; tokens: number }>;
  connectSignin: Outcome<LoginSummary>;
  grpcWebSignin: Outcome<LoginSummary>;
  /** GetCurrentUser with `Authorization: Bearer` (a non-simple header: preflighted). */
  connectMe: Outcome<UserSummary>;
  grpcWebMe: Outcome<UserSummary>;
  restSignin: Outcome<HttpSummary>;
  restMe: Outcome<HttpSummary>;
}

export interface RejectionResult {
  /** A garbage ID token over each protocol. */
  connectRejected: Outcome<LoginSummary>;
  grpcWebRejected: Outcome<LoginSummary>;
  restRejected: Outcome<HttpSummary>;
  /** GetCurrentUser without a token. */
  connectUnauthenticated: Outcome<UserSummary>;
}

export interface BrowserClient {
  /** Sign-ins over each protocol and GetCurrentUser, for subject `sub`, with tokens the page mints. */
  signin(api: string, sub: string): Promise<SigninResult>;
  /** Calls the service refuses: a garbage ID token over each protocol, GetCurrentUser without a token. */
  rejections(api: string): Promise<RejectionResult>;
  /** One Connect sign-in and one REST call with a token minted elsewhere (for refused origins). */
  probe(
    api: string,
    idToken: string,
  ): Promise<{ connect: Outcome<LoginSummary>; grpcWeb: Outcome<LoginSummary>; rest: Outcome<HttpSummary> }>;
}

const GARBAGE_TOKEN = "not-a-jwt";

function describeError(e: unknown): CallError {
  if (e instanceof ConnectError) {
    const info = e.findDetails(ErrorInfoSchema)[0];
    return {
      name: "ConnectError",
      message: e.rawMessage,
      code: e.code,
      codeName: Code[e.code],
      ...(info === undefined ? {} : { reason: info.reason, domain: info.domain }),
    };
  }
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: "unknown", message: String(e) };
}

async function attempt<T>(fn: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (e) {
    return { ok: false, error: describeError(e) };
  }
}

function transports(api: string): { connect: Transport; grpcWeb: Transport } {
  return {
    // JSON on purpose: the Connect JSON mapping is what browsers most often speak.
    connect: createConnectTransport({ baseUrl: api, useBinaryFormat: false }),
    grpcWeb: createGrpcWebTransport({ baseUrl: api }),
  };
}

/** A sign-in summarised for Node; the access token is kept in the page. */
async function signinWithToken(
  transport: Transport,
  idToken: string,
): Promise<{ summary: LoginSummary; accessToken: string | null }> {
  const res = await createClient(AuthService, transport).signinWithIdToken({ idToken, provider: "dev" });
  return {
    accessToken: res.accessToken ?? null,
    summary: {
      userId: res.userId ?? "",
      requiresMfa: res.requiresMfa,
      tokenType: res.tokenType,
      hasAccessToken: (res.accessToken ?? "") !== "",
      hasRefreshToken: (res.refreshToken ?? "") !== "",
      email: res.user?.email ?? "",
    },
  };
}

async function signin(transport: Transport, idToken: string): Promise<LoginSummary> {
  return (await signinWithToken(transport, idToken)).summary;
}

async function me(transport: Transport, accessToken: string | null): Promise<UserSummary> {
  const headers: Record<string, string> = accessToken === null ? {} : { authorization: `Bearer ${accessToken}` };
  const user = await createClient(UserService, transport).getCurrentUser({}, { headers });
  return { id: user.id, email: user.email ?? "" };
}

async function http(url: string, init: RequestInit): Promise<HttpSummary> {
  const res = await fetch(url, init);
  const text = await res.text();
  return {
    status: res.status,
    requestId: res.headers.get("x-request-id"),
    body: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>),
  };
}

function restSignin(api: string, idToken: string): Promise<HttpSummary> {
  return http(`${api}/auth/id-token/signin`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ id_token: idToken, provider: "dev" }),
  });
}

const client: BrowserClient = {
  async signin(api, sub) {
    const { connect, grpcWeb } = transports(api);
    const email = `${sub}@example.com`;

    // One fresh ID token per sign-in, minted by the page through the dev issuer (plain JSON).
    const tokens: string[] = [];
    const mint = await attempt(async () => {
      let status = 0;
      let provider: unknown;
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`${api}/dev/oidc/token`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ sub, email, email_verified: true }),
        });
        status = res.status;
        const body = (await res.json()) as { id_token?: string; provider?: unknown };
        provider = body.provider;
        if (typeof body.id_token === "string") tokens.push(body.id_token);
      }
      return { status, provider, tokens: tokens.length };
    });
    const token = (i: number) => tokens[i] ?? GARBAGE_TOKEN;

    let accessToken: string | null = null;
    const connectSignin = await attempt(async () => {
      const res = await signinWithToken(connect, token(0));
      accessToken = res.accessToken;
      return res.summary;
    });
    const grpcWebSignin = await attempt(() => signin(grpcWeb, token(1)));
    const connectMe = await attempt(() => me(connect, accessToken));
    const grpcWebMe = await attempt(() => me(grpcWeb, accessToken));
    const restSigninResult = await attempt(() => restSignin(api, token(2)));
    const restMe = await attempt(() =>
      http(`${api}/auth/me`, { method: "GET", headers: { authorization: `Bearer ${accessToken ?? ""}` } }),
    );

    return { mint, connectSignin, grpcWebSignin, connectMe, grpcWebMe, restSignin: restSigninResult, restMe };
  },

  async rejections(api) {
    const { connect, grpcWeb } = transports(api);
    return {
      connectRejected: await attempt(() => signin(connect, GARBAGE_TOKEN)),
      grpcWebRejected: await attempt(() => signin(grpcWeb, GARBAGE_TOKEN)),
      restRejected: await attempt(() => restSignin(api, GARBAGE_TOKEN)),
      connectUnauthenticated: await attempt(() => me(connect, null)),
    };
  },

  async probe(api, idToken) {
    const { connect, grpcWeb } = transports(api);
    return {
      connect: await attempt(() => signin(connect, idToken)),
      grpcWeb: await attempt(() => signin(grpcWeb, idToken)),
      rest: await attempt(() => restSignin(api, idToken)),
    };
  },
};

(globalThis as { identityBrowserClient?: BrowserClient }).identityBrowserClient = client;
