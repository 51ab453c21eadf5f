/** The OAuth door's own decisions (client authentication, parameters, error mapping) with fakes; no I/O. */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { DomainError } from "../../src/core/errors.ts";
import type { ClientInfo, LoginResult } from "../../src/core/model.ts";
import {
  createOAuthService,
  GRANT_REFRESH_TOKEN,
  OAuthError,
  type OAuthClient,
  type OAuthRequest,
  oauthErrorOf,
  OAUTH_GRANTS,
} from "../../src/core/oauth.ts";
import { createClientSecretCheck } from "../../src/tokens/client-secrets.ts";

const client: ClientInfo = { ip: "203.0.113.7", userAgent: "vitest/1", requestId: null, deviceId: null };
const SECRET = "s3cret-0123456789abcdefghijklmnopqrstuvwxyz";
const digest = createHash("sha256").update(SECRET).digest();

const clients = new Map<string, OAuthClient>([
  [
    "pub",
    { id: "pub", authMethod: "none", secretSha256: null, grants: new Set(OAUTH_GRANTS), audiences: ["identity"] },
  ],
  [
    "conf",
    {
      id: "conf",
      authMethod: "client_secret_basic",
      secretSha256: digest,
      grants: new Set([GRANT_REFRESH_TOKEN]),
      audiences: ["identity"],
    },
  ],
]);

const login = { accessToken: "at", refreshToken: "rt_next", expiresIn: 1800 } as LoginResult;
const refreshed: string[] = [];
const refreshedAs: (string | null)[] = [];
const oauth = createOAuthService({
  clock: { now: () => new Date("2026-03-01T12:00:00Z") },
  clients,
  secrets: createClientSecretCheck(),
  signin: { signinWithIdToken: async () => login },
  sessions: {
    refresh: async (token, by, clientKey) => {
      if (token === "rt_reused") throw new DomainError("refresh_token_reused", "reused");
      refreshed.push(`${token}@${clientKey}`);
      refreshedAs.push(by.oauthClientId ?? null);
      return login;
    },
    authenticate: async () => {
      throw new DomainError("access_token_invalid", "no");
    },
    signOut: async (credential) => {
      if ("refreshToken" in credential && credential.refreshToken === "rt_theirs") {
        throw new DomainError("refresh_token_client_mismatch", "another client's");
      }
      return 1;
    },
    liveRefreshToken: async () => null,
  },
  mfa: { verify: async () => login },
});

function request(params: Record<string, string | string[]>, basic: OAuthRequest["basic"] = null): OAuthRequest {
  return { params: new Map(Object.entries(params).map(([k, v]) => [k, Array.isArray(v) ? v : [v]])), basic, client };
}

async function refusal(p: Promise<unknown>): Promise<OAuthError> {
  const e = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(e).toBeInstanceOf(OAuthError);
  return e as OAuthError;
}

describe("OAuth client authentication", () => {
  it("a public client by client_id; a confidential one by Basic with the right secret", async () => {
    await expect(
      oauth.token(request({ client_id: "pub", grant_type: "refresh_token", refresh_token: "rt_a" })),
    ).resolves.toMatchObject({ refresh_token: "rt_next" });
    await expect(
      oauth.token(request({ grant_type: "refresh_token", refresh_token: "rt_b" }, { id: "conf", secret: SECRET })),
    ).resolves.toMatchObject({ token_type: "Bearer" });
    // The refresh is keyed by the client, for the grace window.
    expect(refreshed).toEqual(["rt_a@oauth:pub", "rt_b@oauth:conf"]);
    // And the core is told which client is asking: the session's binding is checked against it.
    expect(refreshedAs).toEqual(["pub", "conf"]);
  });

  it("revoking another client's refresh token is refused with unauthorized_client (RFC 7009 §2.1)", async () => {
    const e = await refusal(oauth.revoke(request({ client_id: "pub", token: "rt_theirs" })));
    expect([e.error, e.status]).toEqual(["unauthorized_client", 400]);
    await expect(oauth.revoke(request({ client_id: "pub", token: "rt_mine" }))).resolves.toBeUndefined();
  });

  it.each([
    ["a wrong secret", request({ grant_type: "refresh_token" }, { id: "conf", secret: "nope" }), "invalid_client", 401],
    ["an unknown client", request({ client_id: "ghost", grant_type: "refresh_token" }), "invalid_client", 401],
    ["no client at all", request({ grant_type: "refresh_token" }), "invalid_client", 401],
    ["a malformed Basic header", request({ grant_type: "refresh_token" }, "malformed"), "invalid_client", 401],
    [
      "the confidential client's secret in the body (registered for Basic)",
      request({ client_id: "conf", client_secret: SECRET, grant_type: "refresh_token" }),
      "invalid_client",
      401,
    ],
    [
      "Basic and client_secret both",
      request({ client_secret: SECRET, grant_type: "refresh_token" }, { id: "conf", secret: SECRET }),
      "invalid_request",
      400,
    ],
    [
      "client_id differing from Basic",
      request({ client_id: "pub", grant_type: "refresh_token" }, { id: "conf", secret: SECRET }),
      "invalid_request",
      400,
    ],
    ["client_id twice", request({ client_id: ["pub", "pub"], grant_type: "refresh_token" }), "invalid_request", 400],
    [
      "a grant the client may not use",
      request(
        { grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer", assertion: "x" },
        { id: "conf", secret: SECRET },
      ),
      "unauthorized_client",
      400,
    ],
    ["no grant_type", request({ client_id: "pub" }), "invalid_request", 400],
    [
      "an unknown grant_type",
      request({ client_id: "pub", grant_type: "client_credentials" }),
      "unsupported_grant_type",
      400,
    ],
    [
      "a client_assertion without its type",
      request({ client_id: "pub", grant_type: "refresh_token", client_assertion: "a.b.c" }),
      "invalid_request",
      400,
    ],
  ])("refuses %s", async (_name, req, error, status) => {
    const e = await refusal(oauth.token(req));
    expect([e.error, e.status]).toEqual([error, status]);
  });

  it("unknown client and wrong secret read the same (no probing for client ids)", async () => {
    const unknown = await refusal(oauth.token(request({ grant_type: "refresh_token" }, { id: "ghost", secret: "x" })));
    const wrong = await refusal(oauth.token(request({ grant_type: "refresh_token" }, { id: "conf", secret: "x" })));
    expect(unknown.description).toBe(wrong.description);
  });

  it("introspection is for confidential clients; an invalid token is inactive", async () => {
    expect((await refusal(oauth.introspect(request({ client_id: "pub", token: "x" })))).error).toBe("invalid_client");
    await expect(oauth.introspect(request({ token: "x" }, { id: "conf", secret: SECRET }))).resolves.toEqual({
      active: false,
    });
  });
});

describe("domain errors as RFC 6749 §5.2 errors", () => {
  it.each([
    ["id_token_replayed", "invalid_grant", 400],
    ["refresh_token_reused", "invalid_grant", 400],
    ["challenge_expired", "invalid_grant", 400],
    ["user_disabled", "invalid_grant", 400],
    ["id_token_required", "invalid_request", 400],
    ["rate_limited", "rate_limited", 429],
    ["provider_unavailable", "temporarily_unavailable", 503],
    ["internal", "server_error", 500],
  ] as const)("%s -> %s (%i)", (code, error, status) => {
    const e = oauthErrorOf(new DomainError(code, "m"));
    expect([e.error, e.status]).toEqual([error, status]);
  });

  it("an unknown error is server_error without its message; a refresh refusal names its reason", async () => {
    const e = oauthErrorOf(new Error("db password is hunter2"));
    expect([e.error, e.description]).toEqual(["server_error", "internal error"]);
    const reused = await refusal(
      oauth.token(request({ client_id: "pub", grant_type: "refresh_token", refresh_token: "rt_reused" })),
    );
    expect([reused.error, reused.extra["error_code"]]).toEqual(["invalid_grant", "refresh_token_reused"]);
  });
});
