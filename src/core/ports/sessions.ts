import type { AuditRecord, NewRefreshToken, SessionInfo, UserRecord, UserWithPassword } from "../model.ts";

/** Ports of sessions and their rotating refresh tokens. */

/** Opaque bearer secrets (refresh tokens, challenges): random, stored only as a hash. */
export interface OpaqueTokens {
  issue(prefix: string): { token: string; hash: string };
  /**
   * The refresh token that succeeds the one hashed `spentHash` when `clientKey` (the door and
   * client) rotates it: the same on every replica, so a refresh repeated within the grace window
   * gets the same successor back.
   */
  successor(spentHash: string, clientKey: string): { token: string; hash: string };
  hash(token: string): string;
}

/** What the store found for a presented refresh token, inside the rotation transaction. */
export interface RefreshState {
  tokenId: string;
  tokenExpiresAt: Date;
  /** When it was spent before this call (null: this call spent it). */
  previouslyUsedAt: Date | null;
  session: SessionInfo;
  user: UserWithPassword;
}

export type RefreshDecision =
  | { kind: "rotate"; next: NewRefreshToken; audit: AuditRecord }
  | { kind: "reject"; revokeSession: string | null; audit: AuditRecord | null };

export interface SessionStore {
  /**
   * In one transaction: spends the refresh token with hash `tokenHash` (atomically: of two
   * concurrent callers exactly one spends it), reads its session and user, asks `decide`, then
   * applies the decision (new token + session touch, or revocation) and its audit record.
   * `decide` receives null when no token has that hash.
   */
  refresh(
    tokenHash: string,
    now: Date,
    decide: (state: RefreshState | null) => RefreshDecision,
  ): Promise<RefreshDecision>;
  /** A session with its user's status, for authenticating requests (one read). */
  findSession(sessionId: string): Promise<(SessionInfo & { user: Pick<UserRecord, "status" | "lockedUntil"> }) | null>;
  /** The session a refresh token belongs to, with the token's own state. */
  findSessionByRefreshToken(
    tokenHash: string,
  ): Promise<(SessionInfo & { tokenUsedAt: Date | null; tokenExpiresAt: Date }) | null>;
  listActiveSessions(userId: string, now: Date): Promise<SessionInfo[]>;
  /**
   * Revokes the user's session(s) not yet revoked; returns how many. Audited in the same
   * transaction. Revoking all of them (no `sessionId`) also forgets every trusted device of the user.
   */
  revokeSessions(
    filter: { userId: string; sessionId?: string | undefined },
    reason: string,
    now: Date,
    audit: AuditRecord,
  ): Promise<number>;
  findUser(userId: string): Promise<UserWithPassword | null>;
  /** Deletes sessions (and their refresh tokens) that ended before `before`; returns how many. */
  purgeExpiredSessions(before: Date): Promise<number>;
}
