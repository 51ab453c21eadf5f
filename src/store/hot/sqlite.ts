/**
 * The hot path on SQLite: prepared better-sqlite3 statements on the very connection the Prisma
 * adapter opened (database.ts). A sign-in is one read (small single-table statements run back
 * to back in one synchronous turn) and one write transaction; a refresh one transaction; the
 * per-request session check one read. Writes that arrive in the same turn of the event loop share
 * one transaction (group commit, sqlite-group-commit.ts).
 *
 * Every transaction here runs synchronously from BEGIN to COMMIT, so nothing else in the process
 * can interleave with it. Prisma's own interactive transactions span awaits on the same
 * connection; while one is open (`inTransaction`), these wait their turn instead of joining it.
 */
import type BetterSqlite3 from "better-sqlite3";
import type { AuditRecord, UserWithPassword } from "../../core/model.ts";
import type { SigninFailureCounter } from "../../core/ports/audit.ts";
import type { RefreshDecision, SessionStore } from "../../core/ports/sessions.ts";
import {
  SigninConflict,
  type SigninReader,
  type SigninSnapshot,
  type SigninSnapshotQuery,
  type SigninWrite,
  type SigninWriter,
} from "../../core/ports/signin.ts";
import type { WalGate } from "../sqlite-wal-gate.ts";
import { auditRowValues, dateOf, refreshStateOf, type Row, sessionWithStatusOf, snapshotOf, userOf } from "./rows.ts";
import { createGroupCommit } from "./sqlite-group-commit.ts";
import * as SQL from "./sql.ts";

export type HotSessionStore = Pick<SessionStore, "refresh" | "findSession" | "findUser">;
export type HotStore = SigninReader & SigninWriter & SigninFailureCounter & HotSessionStore;

type Value = string | number | bigint | null | Buffer;

/** A value as SQLite stores it where Prisma wrote it: ISO text with +00:00, 0/1, text. */
function sqliteValue(v: unknown): Value {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return v.toISOString().replace("Z", "+00:00");
  if (typeof v === "boolean") return v ? 1 : 0;
  if (typeof v === "number" || typeof v === "bigint" || typeof v === "string") return v;
  return String(v);
}

export function createSqliteHotStore(
  db: BetterSqlite3.Database,
  options: {
    statementTimeoutMs: number;
    onQuery?: ((sql: string) => void) | undefined;
    walGate?: WalGate | undefined;
    beforeWrite?: (() => void) | undefined;
  },
): HotStore {
  const prepared = new Map<string, { statement: BetterSqlite3.Statement; order: number[] }>();

  function statement(sql: string) {
    let entry = prepared.get(sql);
    if (entry === undefined) {
      const { sql: text, order } = SQL.positional(sql);
      const statement = db.prepare(text);
      if (statement.reader) statement.safeIntegers(false);
      entry = { statement, order };
      prepared.set(sql, entry);
    }
    options.onQuery?.(sql);
    return entry;
  }
  const args = (order: number[], params: readonly unknown[]) => order.map((i) => sqliteValue(params[i]));
  const get = (sql: string, ...params: unknown[]) => {
    const { statement: s, order } = statement(sql);
    return s.get(args(order, params)) as Row | undefined;
  };
  const all = (sql: string, ...params: unknown[]) => {
    const { statement: s, order } = statement(sql);
    return s.raw(true).all(args(order, params)) as unknown[][];
  };
  const run = (sql: string, ...params: unknown[]) => {
    const { statement: s, order } = statement(sql);
    return s.run(args(order, params)).changes;
  };
  const { transaction, read } = createGroupCommit(db, (sql) => void run(sql), options);

  /** The user's most recent networks, newest first (sql.ts `networks`), sorted here when there are few. */
  function recentNetworks(userId: unknown): unknown[][] {
    const some = all(SQL.SQLITE_READ.someNetworks, userId);
    if (some.length > SQL.RECENT_NETWORKS) return all(SQL.SQLITE_READ.networks, userId);
    // last_seen_at (index 4) compared as SQLite's ORDER BY compares the stored text.
    return some.sort((a, b) => (String(a[4]) < String(b[4]) ? 1 : String(a[4]) > String(b[4]) ? -1 : 0));
  }

  function audit(event: AuditRecord): void {
    run(SQL.INSERT_AUDIT_SQL, ...auditRowValues(event));
  }

  function commit(write: SigninWrite): UserWithPassword {
    const { account, at } = write;
    // First: a replayed token fails here, before anything else is written.
    for (const use of write.uses ?? []) run(SQL.INSERT_USED_ID_TOKEN_SQL, use.key, use.expiresAt);
    const challenge = "challenge" in write ? write.challenge : null;
    let user: UserWithPassword;
    if (account.kind === "create") {
      const u = account.user;
      run(
        SQL.INSERT_USER_SQL,
        u.id,
        u.username,
        u.email,
        u.emailNormalized,
        u.emailVerified,
        u.phone,
        false,
        u.createdAt,
        at,
        challenge === null ? at : null,
      );
      const i = account.identity;
      run(SQL.INSERT_IDENTITY_SQL, i.id, u.id, i.issuer, i.subject, i.provider, i.email, i.emailVerified, at, at);
      user = { ...u, status: "active", lockedUntil: null, mustChangePassword: false, passwordChangedAt: null };
    } else {
      // The status is checked again here, under the write lock: a disable since the read wins.
      // A sign-in waiting for MFA touches nothing of an existing user until the challenge completes.
      const row = get(SQL.ACTIVE_USER_SQL, at, account.userId);
      if (row === undefined) throw new SigninConflict("status");
      // Its last sign-in is written only when stale (core/last-seen.ts): the write
      // lock held since BEGIN IMMEDIATE is the race guard, not a write to the row.
      const last = dateOf(row["last_signin_at"]);
      if (challenge === null && (last === null || last < SQL.staleBefore(at)))
        run(SQL.TOUCH_USER_SQL, at, account.userId);
      user = userOf(row);
      if (challenge === null) {
        if (account.kind === "link") {
          const i = account.identity;
          run(
            SQL.INSERT_IDENTITY_SQL,
            i.id,
            account.userId,
            i.issuer,
            i.subject,
            i.provider,
            i.email,
            i.emailVerified,
            at,
            at,
          );
        } else if (account.identityFresh !== true) {
          // Read fresh: nothing to write (core/last-seen.ts), not even a statement.
          run(SQL.TOUCH_IDENTITY_SQL, at, account.identityId, SQL.staleBefore(at));
        }
      }
    }
    if ("challenge" in write) {
      const c = write.challenge;
      run(
        SQL.INSERT_CHALLENGE_SQL,
        c.id,
        c.tokenHash,
        c.userId,
        c.identityId,
        c.provider,
        c.deviceKey,
        c.ip,
        c.userAgent?.slice(0, 512) ?? null,
        JSON.stringify(c.amr),
        JSON.stringify(c.risk),
        JSON.stringify(c.context),
        JSON.stringify(c.methods),
        c.pendingIdentity === null ? null : JSON.stringify(c.pendingIdentity),
        c.createdAt,
        c.expiresAt,
        c.clientId ?? null,
      );
    } else {
      const { session: s, refreshToken: t, seen } = write;
      const identityId = account.kind === "existing" ? account.identityId : account.identity.id;
      run(
        SQL.INSERT_SESSION_SQL,
        s.id,
        s.userId,
        identityId,
        s.provider,
        JSON.stringify(s.amr),
        s.client.ip,
        s.client.userAgent?.slice(0, 512) ?? null,
        s.createdAt,
        s.createdAt,
        s.expiresAt,
        s.client.oauthClientId ?? null,
      );
      run(SQL.INSERT_REFRESH_SQL, t.id, t.sessionId, t.tokenHash, t.createdAt, t.expiresAt);
      if (seen !== undefined) {
        // A device or network read fresh (seen.fresh) is left as it is: no statement for it.
        if (seen.deviceKey !== null && seen.fresh?.device !== true)
          run(SQL.UPSERT_DEVICE_SQL, s.userId, seen.deviceKey, at, SQL.staleBefore(at));
        // A trusted device's credential skipped MFA: one more statement in the same transaction.
        if (seen.trustedDeviceId != null) run(SQL.TOUCH_TRUSTED_DEVICE_SQL, at, seen.trustedDeviceId);
        if (seen.network !== null && seen.fresh?.network !== true) {
          run(
            SQL.UPSERT_NETWORK_SQL,
            s.userId,
            seen.network,
            seen.geo?.country ?? null,
            seen.geo?.latitude ?? null,
            seen.geo?.longitude ?? null,
            at,
            SQL.staleBefore(at),
          );
        }
      }
    }
    audit(write.audit);
    return user;
  }

  /** The sign-in's read (sql.ts SQLITE_READ), statement by statement. */
  function readSnapshot(q: SigninSnapshotQuery): SigninSnapshot {
    const identity = get(SQL.SQLITE_READ.identity, q.issuer, q.subject);
    const ip = q.ipFailures;
    const ipFailures = ip === null ? 0 : all(SQL.SQLITE_READ.ipFailures, ip.ip, ip.since, ip.cap).length;
    if (identity === undefined) {
      // Rows in USER_COLUMNS order + the password change time: the shape snapshotOf reads.
      const owners = q.verifiedEmail === null ? null : all(SQL.SQLITE_READ.emailOwners, q.verifiedEmail);
      return snapshotOf({ ip_failures: ipFailures, email_owners: owners }, q);
    }
    const userId = identity["user_id"];
    const user = get(SQL.SQLITE_READ.user, userId);
    // An identity whose user is gone (deleted meanwhile) reads as no link.
    if (user === undefined) return snapshotOf({ ip_failures: ipFailures }, q);
    const row: Row = {
      ...user,
      identity_id: identity["identity_id"],
      identity_last_signin_at: identity["identity_last_signin_at"],
      ip_failures: ipFailures,
    };
    const h = q.history;
    if (h !== null) {
      const factors = get(SQL.SQLITE_READ.factors, userId)!;
      row["totp"] = factors["totp"] ?? null;
      row["passkeys"] = factors["passkeys"];
      row["device"] =
        (h.deviceKey === null ? undefined : get(SQL.SQLITE_READ.device, userId, h.deviceKey))?.["device"] ??
        get(SQL.SQLITE_READ.anyDevice, userId)?.["device"] ??
        null;
      // Only when a credential was presented (one unique-index seek, bound to the user).
      row["trusted_device"] =
        h.trustedDevice === null
          ? null
          : (get(SQL.SQLITE_READ.trustedDevice, userId, h.trustedDevice)?.["trusted_device"] ?? null);
      row["networks"] = recentNetworks(userId);
      row["recent_failures"] = get(SQL.SQLITE_READ.recentFailures, userId, h.failuresSince)!["recent_failures"];
    }
    return snapshotOf(row, q);
  }

  return {
    readSignin(q) {
      // Statement by statement, each its own read transaction. One read transaction for all of them
      // measured ~13 µs less per sign-in on one process, but with server.workers on one file it
      // kept read marks across the statements that the other process's WAL restart waited for:
      // two workers fell from 1.2–1.4× one worker's rate to 0.8–1.0× (bench --workers 1,2).
      return read(() => readSnapshot(q));
    },

    failuresFromIp(ip, since, cap) {
      return read(() => all(SQL.SQLITE_READ.ipFailures, ip, since, cap).length);
    },

    nthRecentFailureFromIp(ip, since, n) {
      return read(() => dateOf(get(SQL.NTH_RECENT_ADDRESS_FAILURE_SQL, ip, since, n - 1)?.["at"]));
    },

    commitSignin(write) {
      return transaction(() => {
        try {
          return commit(write);
        } catch (e) {
          throw conflictOf(e) ?? e;
        }
      });
    },

    refresh(tokenHash, now, decide) {
      return transaction((): RefreshDecision => {
        // Spending is the race arbiter: of two callers presenting one token, one changes the row.
        const spent = run(SQL.SPEND_REFRESH_SQL, now, tokenHash);
        const row = get(SQL.REFRESH_STATE_SQL, tokenHash);
        const state = row === undefined ? null : refreshStateOf(row, spent === 1);
        const decision = decide(state);
        if (decision.kind === "rotate") {
          const t = decision.next;
          run(SQL.INSERT_REFRESH_SQL, t.id, t.sessionId, t.tokenHash, t.createdAt, t.expiresAt);
          run(SQL.TOUCH_SESSION_SQL, now, t.sessionId);
        } else if (decision.revokeSession !== null) {
          run(SQL.REVOKE_SESSION_SQL, now, "refresh_token_reuse", decision.revokeSession);
        } else if (spent === 1 && state !== null) {
          // Refused without a rotation (user locked, session ended...): the token stays unspent,
          // so it works again once the refusal ends instead of counting as reuse then.
          run(SQL.UNSPEND_REFRESH_SQL, state.tokenId);
        }
        if (decision.audit !== null) audit(decision.audit);
        return decision;
      });
    },

    findSession(sessionId) {
      return read(() => {
        const row = get(SQL.FIND_SESSION_SQL, sessionId);
        if (row === undefined) return null;
        return sessionWithStatusOf(row);
      });
    },

    findUser(userId) {
      return read(() => {
        const row = get(SQL.FIND_USER_SQL, userId);
        return row === undefined ? null : userOf(row);
      });
    },
  };
}

/** A unique violation of a sign-in's write as the core's SigninConflict. */
function conflictOf(e: unknown): SigninConflict | null {
  const code = (e as { code?: unknown })?.code;
  if (code !== "SQLITE_CONSTRAINT_UNIQUE" && code !== "SQLITE_CONSTRAINT_PRIMARYKEY") return null;
  const message = String((e as Error).message);
  if (message.includes("users.username")) return new SigninConflict("username", { cause: e });
  if (message.includes("used_id_tokens.key")) return new SigninConflict("replay", { cause: e });
  if (message.includes("identities.issuer") || message.includes("identities.subject"))
    return new SigninConflict("identity", { cause: e });
  return null;
}
