import { type AddressLimit, limitKeyOf, UNLIMITED } from "./address-limit.ts";
import type { Clock } from "./clock.ts";
import { DomainError } from "./errors.ts";
import { newId } from "./ids.ts";
import { loginResultOf } from "./login-result.ts";
import type { ClientInfo, LoginResult, PasswordStatus, Principal, SessionInfo, UserRecord } from "./model.ts";
import { NO_PASSWORD_EXPIRY, type PasswordExpiryPolicy, passwordStatusOf } from "./password-policy.ts";
import type { OpaqueTokens, RefreshDecision, RefreshState, SessionStore } from "./ports/sessions.ts";
import type { AccessTokenIssuer, AccessTokenVerifier } from "./ports/signing-keys.ts";
import type { TrustedDeviceStore } from "./ports/trusted-devices.ts";
import { userAgentFamily } from "./signin-context.ts";
import { assertActive } from "./user-status.ts";

export interface SessionDeps {
  clock: Clock;
  store: SessionStore;
  accessTokens: AccessTokenIssuer;
  accessTokenVerifier: AccessTokenVerifier;
  opaqueTokens: OpaqueTokens;
  /** A session not refreshed for this long ends (idle lifetime), in seconds. */
  idleTtlSeconds: number;
  /** Local-password expiry, for the password fields of results (default: never expires). */
  passwordExpiry?: PasswordExpiryPolicy;
  /** The per-address limit of refresh and of sign-out by refresh token. */
  addressLimit?: AddressLimit | undefined;
  /** "Forget this device" (ForgetDevice). */
  trustedDevices: TrustedDeviceStore;
  /**
   * A spent refresh token presented again within this many seconds by the same client gets the
   * same successor back instead of revoking the session (two tabs refreshing at once); 0: never.
   */
  refreshReuseGraceSeconds?: number | undefined;
}

/** A session as its owner sees it listed: what a person recognises, no identifier of the device. */
export type SessionListing = SessionInfo & { browser: string | null; os: string | null };

const DEVICE_CREDENTIAL = /^tdc_[A-Za-z0-9_-]{43}$/;

export interface SessionService {
  /**
   * Rotates a refresh token; a spent token revokes its whole session (reuse detection), unless
   * the same client (`clientKey`: the door and client id, default the RPC door) spent it within
   * the grace window: then it gets the same successor refresh token again.
   */
  refresh(refreshToken: string, client: ClientInfo, clientKey?: string): Promise<LoginResult>;
  /**
   * Who the access token says is calling, after checking that its session is still live. This
   * service checks revocation on every authenticated request (one primary-key read), so sign-out
   * takes effect here at once; other services that verify our JWTs offline accept a token until
   * its `exp` (30 minutes by default).
   */
  authenticate(accessToken: string): Promise<Principal>;
  /**
   * RFC 7662 for a refresh token: its session and expiry when it is live (unspent, unexpired, its
   * session neither ended nor idle) and bound to `clientId` (null: the service's own API); null
   * otherwise, whoever's it is. One indexed read (refresh_tokens.token_hash), nothing written;
   * the user's status is checked when the token is used, not here.
   */
  liveRefreshToken(
    refreshToken: string,
    clientId: string | null,
  ): Promise<{ session: SessionInfo; tokenExpiresAt: Date } | null>;
  signOut(
    credential: { principal: Principal } | { refreshToken: string },
    allSessions: boolean,
    client: ClientInfo,
  ): Promise<number>;
  currentUser(principal: Principal): Promise<{ user: UserRecord; passwordStatus: PasswordStatus }>;
  listSessions(principal: Principal): Promise<SessionListing[]>;
  /**
   * "Forget this device": the caller's trusted device with this credential, or all of them,
   * stop skipping MFA; returns how many were forgotten (0 for a credential not the caller's).
   */
  forgetDevices(
    principal: Principal,
    which: { credential: string } | { all: true },
    client: ClientInfo,
  ): Promise<number>;
  revokeSession(principal: Principal, sessionId: string, client: ClientInfo): Promise<void>;
}

/** The shape of the refresh tokens we issue (opaque-tokens.ts: `rt_` + 256 bits, base64url). */
const REFRESH_TOKEN = /^rt_[A-Za-z0-9_-]{43}$/;

export function createSessionService(deps: SessionDeps): SessionService {
  const { clock, store, opaqueTokens } = deps;

  function liveOrThrow(session: SessionInfo, now: Date): void {
    if (session.revokedAt !== null) throw new DomainError("session_revoked", "this session has been signed out");
    if (session.expiresAt <= now) throw new DomainError("session_expired", "this session has expired; sign in again");
    if (session.lastUsedAt.getTime() + deps.idleTtlSeconds * 1000 <= now.getTime()) {
      throw new DomainError("session_expired", "this session was idle too long; sign in again");
    }
  }

  const graceMs = (deps.refreshReuseGraceSeconds ?? 0) * 1000;

  async function refreshOnce(refreshToken: string, client: ClientInfo, clientKey: string): Promise<LoginResult> {
    if (refreshToken === "") throw new DomainError("refresh_token_required", "refresh_token is required");
    // What we never issued is refused without touching the store: junk from an address over its
    // limit is still evaluated (address-limit.ts), and must not cost a write transaction each.
    if (!REFRESH_TOKEN.test(refreshToken))
      throw new DomainError("refresh_token_invalid", "the refresh token is not valid");
    const now = clock.now();
    const spentHash = opaqueTokens.hash(refreshToken);
    // Derived from the spent token and the client: a repeat within the grace window finds it again.
    const next = opaqueTokens.successor(spentHash, clientKey);
    let failure: DomainError | undefined;
    let state: RefreshState | null = null;
    let withinGrace = false;
    const audit = (type: string, code?: string) => ({
      type,
      at: now,
      code,
      userId: state?.user.id,
      provider: state?.session.provider ?? undefined,
      client,
      detail: state === null ? undefined : { session_id: state.session.id },
    });
    const decision: RefreshDecision = await store.refresh(spentHash, now, (found) => {
      state = found;
      if (found === null) {
        failure = new DomainError("refresh_token_invalid", "the refresh token is not valid");
        return { kind: "reject", revokeSession: null, audit: null };
      }
      if (
        found.previouslyUsedAt !== null &&
        graceMs > 0 &&
        now.getTime() - found.previouslyUsedAt.getTime() <= graceMs
      ) {
        // Spent a moment ago: the other tab's refresh, or a thief's. Decided after this
        // transaction, by whether the successor this client would have got exists.
        withinGrace = true;
        return { kind: "reject", revokeSession: null, audit: null };
      }
      if (found.previouslyUsedAt !== null) {
        // Reuse of a spent token: whoever holds the family may be an attacker. End it all.
        failure = new DomainError(
          "refresh_token_reused",
          "this refresh token was already used; the session has been revoked for safety",
        );
        return {
          kind: "reject",
          revokeSession: found.session.id,
          audit: audit("session.reuse_detected", "refresh_token_reused"),
        };
      }
      if (found.session.clientId !== (client.oauthClientId ?? null)) {
        // Bound to the door and client that opened the session (RFC 6749 §6, §10.4). A spent token
        // is theft wherever it shows up (above); an unspent one at the wrong door is refused and
        // audited but not treated as theft: the binding alone makes it useless here, and revoking
        // would let any client (or any RPC caller) that sees a token end the session. Nothing
        // changes: the token stays unspent for its own client.
        failure = new DomainError("refresh_token_client_mismatch", "this refresh token was issued to another client");
        return { kind: "reject", revokeSession: null, audit: audit("token.refresh_failed", failure.code) };
      }
      try {
        // Status first: a disabled user's sessions are revoked too, and the client should
        // learn `user_disabled` (tell the user) rather than `session_revoked` (sign in again).
        assertActive(found.user, now);
        liveOrThrow(found.session, now);
        if (found.tokenExpiresAt <= now)
          throw new DomainError("refresh_token_expired", "the refresh token has expired; sign in again");
      } catch (e) {
        failure = e as DomainError;
        return { kind: "reject", revokeSession: null, audit: audit("token.refresh_failed", failure.code) };
      }
      return {
        kind: "rotate",
        next: {
          id: newId("rtk"),
          sessionId: found.session.id,
          tokenHash: next.hash,
          createdAt: now,
          expiresAt: found.session.expiresAt,
        },
        audit: audit("token.refreshed"),
      };
    });
    if (withinGrace && state !== null) return repeatWithinGrace(state, next, client, now);
    if (decision.kind === "reject" || state === null) throw failure ?? new DomainError("internal", "refresh failed");
    const s: RefreshState = state;
    const accessToken = await deps.accessTokens.issue(
      // The session's authentication, not the refresh's: auth_time and amr stay what they were.
      {
        userId: s.user.id,
        sessionId: s.session.id,
        amr: s.session.amr,
        provider: s.session.provider,
        authTime: s.session.authTime,
      },
      now,
    );
    return loginResultOf(deps, s.user, s.session.id, accessToken, next.token, now);
  }

  /**
   * A spent token presented again within the grace window: if this client's successor is the one
   * that was issued (same door, same client), the same refresh token again with an access token
   * for the same session; anything else (another client, a successor never issued) is reuse.
   * Costs one read more than a refresh, on this path only.
   */
  async function repeatWithinGrace(
    s: RefreshState,
    next: { token: string; hash: string },
    client: ClientInfo,
    now: Date,
  ): Promise<LoginResult> {
    const successor = await store.findSessionByRefreshToken(next.hash);
    if (successor === null || successor.id !== s.session.id) {
      await store.revokeSessions({ userId: s.user.id, sessionId: s.session.id }, "refresh_token_reuse", now, {
        type: "session.reuse_detected",
        at: now,
        code: "refresh_token_reused",
        userId: s.user.id,
        client,
        detail: { session_id: s.session.id, within_grace: true },
      });
      throw new DomainError(
        "refresh_token_reused",
        "this refresh token was already used; the session has been revoked for safety",
      );
    }
    assertActive(s.user, now);
    liveOrThrow(successor, now);
    const accessToken = await deps.accessTokens.issue(
      {
        userId: s.user.id,
        sessionId: s.session.id,
        amr: s.session.amr,
        provider: s.session.provider,
        authTime: s.session.authTime,
      },
      now,
    );
    return loginResultOf(deps, s.user, s.session.id, accessToken, next.token, now);
  }

  return {
    async refresh(refreshToken, client, clientKey = "rpc") {
      const attempt = await (deps.addressLimit?.admit(limitKeyOf(client), "RefreshToken") ?? UNLIMITED);
      try {
        const result = await refreshOnce(refreshToken, client, clientKey);
        attempt.settle();
        return result;
      } catch (e) {
        throw await attempt.fail(e, { recorded: false });
      }
    },

    async authenticate(accessToken) {
      const now = clock.now();
      const principal = await deps.accessTokenVerifier.verify(accessToken, now);
      const session = await store.findSession(principal.sessionId);
      if (session === null || session.userId !== principal.userId) {
        throw new DomainError("session_revoked", "this session no longer exists");
      }
      liveOrThrow(session, now);
      // A disabled or locked user loses access here at once, not when the access token expires.
      assertActive(session.user, now);
      // The row read anyway says how recently the session authenticated (step-up, mfa.ts).
      return {
        ...principal,
        session: { authTime: session.authTime, mfaAt: session.mfaAt, clientId: session.clientId },
      };
    },

    async liveRefreshToken(refreshToken, clientId) {
      if (!REFRESH_TOKEN.test(refreshToken)) return null;
      const now = clock.now();
      const found = await store.findSessionByRefreshToken(opaqueTokens.hash(refreshToken));
      if (found === null || found.clientId !== clientId || found.tokenUsedAt !== null || found.tokenExpiresAt <= now)
        return null;
      try {
        liveOrThrow(found, now);
      } catch {
        return null;
      }
      const { tokenUsedAt: _used, tokenExpiresAt, ...session } = found;
      return { session, tokenExpiresAt };
    },

    async signOut(credential, allSessions, client) {
      const now = clock.now();
      let userId: string;
      let sessionId: string;
      if ("principal" in credential) {
        ({ userId, sessionId } = credential.principal);
      } else {
        if (credential.refreshToken === "")
          throw new DomainError("access_token_required", "send an access token or the refresh_token");
        // Ending every session is for the holder of a live access token, not of a refresh token.
        if (allSessions)
          throw new DomainError("access_token_required", "all_sessions needs the access token (Authorization: Bearer)");
        const attempt = await (deps.addressLimit?.admit(limitKeyOf(client), "SignOut") ?? UNLIMITED);
        try {
          const session = await store.findSessionByRefreshToken(opaqueTokens.hash(credential.refreshToken));
          if (session === null) throw new DomainError("refresh_token_invalid", "the refresh token is not valid");
          if (session.tokenUsedAt !== null) {
            // A spent token is theft as it is at refresh: the session ends, and the caller is told.
            await store.revokeSessions({ userId: session.userId, sessionId: session.id }, "refresh_token_reuse", now, {
              type: "session.reuse_detected",
              at: now,
              code: "refresh_token_reused",
              userId: session.userId,
              client,
              detail: { session_id: session.id, via: "signout" },
            });
            throw new DomainError(
              "refresh_token_reused",
              "this refresh token was already used; the session has been revoked for safety",
            );
          }
          // Only the door and client the session is bound to may end it by its refresh token
          // (RFC 7009 §2.1); as at refresh, an unspent token at the wrong door changes nothing
          // (a spent one is theft wherever it shows up, above).
          if (session.clientId !== (client.oauthClientId ?? null)) {
            throw new DomainError("refresh_token_client_mismatch", "this refresh token was issued to another client");
          }
          liveOrThrow(session, now);
          if (session.tokenExpiresAt <= now)
            throw new DomainError("refresh_token_expired", "the refresh token has expired");
          attempt.settle();
          ({ userId, id: sessionId } = session);
        } catch (e) {
          throw await attempt.fail(e, { recorded: false });
        }
      }
      return store.revokeSessions(
        { userId, sessionId: allSessions ? undefined : sessionId },
        allSessions ? "signout_all" : "signout",
        now,
        {
          type: allSessions ? "session.signed_out_all" : "session.signed_out",
          at: now,
          userId,
          client,
          detail: { session_id: sessionId },
        },
      );
    },

    async currentUser(principal) {
      const user = await store.findUser(principal.userId);
      if (user === null) throw new DomainError("session_revoked", "this user no longer exists");
      return { user, passwordStatus: passwordStatusOf(user, clock.now(), deps.passwordExpiry ?? NO_PASSWORD_EXPIRY) };
    },

    async listSessions(principal) {
      const sessions = await store.listActiveSessions(principal.userId, clock.now());
      return sessions.map((s) => ({ ...s, ...userAgentFamily(s.userAgent) }));
    },

    async forgetDevices(principal, which, client) {
      const now = clock.now();
      let hash: string | null = null;
      if ("credential" in which) {
        if (which.credential === "")
          throw new DomainError("invalid_request", "send device_credential, or all_devices: true");
        // Not a credential of ours: nothing to forget (and nothing to hash).
        if (!DEVICE_CREDENTIAL.test(which.credential)) return 0;
        hash = opaqueTokens.hash(which.credential);
      }
      return deps.trustedDevices.forget(principal.userId, hash, {
        type: "device.forgotten",
        at: now,
        userId: principal.userId,
        client,
        detail: { all_devices: hash === null },
      });
    },

    async revokeSession(principal, sessionId, client) {
      const now = clock.now();
      const count = await store.revokeSessions({ userId: principal.userId, sessionId }, "revoked_by_user", now, {
        type: "session.revoked",
        at: now,
        userId: principal.userId,
        client,
        detail: { session_id: sessionId },
      });
      if (count === 0) throw new DomainError("session_not_found", "no active session of yours has that id");
    },
  };
}
