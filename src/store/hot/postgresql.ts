/**
 * The hot path on PostgreSQL: named prepared statements (parsed once per connection) on the pg
 * pool Prisma uses (database.ts). A returning sign-in is two round trips: one read statement and
 * one write statement whose data-modifying CTEs do the whole write atomically (user share-locked
 * while active, session, refresh token, replay marker, audit; last-seen times only when stale).
 */
import { createHash } from "node:crypto";
import pg from "pg";
import type { RefreshDecision } from "../../core/ports/sessions.ts";
import { SigninConflict, type SigninWrite } from "../../core/ports/signin.ts";
import { storeError } from "../prisma-errors.ts";
import { auditRowValues, dateOf, refreshStateOf, type Row, sessionWithStatusOf, snapshotOf, userOf } from "./rows.ts";
import * as SQL from "./sql.ts";
import type { HotStore } from "./sqlite.ts";

const TIMESTAMP_OIDS = new Set([1114, 1184]);
/** Timestamps as their text (UTC, read by rows.ts dateOf), everything else as pg parses it. */
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    TIMESTAMP_OIDS.has(oid)
      ? (text: string) => text
      : (pg.types.getTypeParser(oid, format as "text") as (text: string) => unknown)) as typeof pg.types.getTypeParser,
};

/** A value for a `timestamp(3)` (UTC wall clock, as Prisma writes it), boolean or text column. */
function pgValue(v: unknown): unknown {
  if (v === undefined) return null;
  if (v instanceof Date) return v.toISOString().slice(0, -1);
  return v;
}

type Queryable = Pick<pg.Pool, "query"> | pg.PoolClient;

export function createPostgresHotStore(
  pool: pg.Pool,
  options: { onQuery?: ((sql: string) => void) | undefined },
): HotStore {
  const names = new Map<string, string>();
  const nameOf = (text: string) => {
    let name = names.get(text);
    if (name === undefined) {
      name = `hot_${createHash("sha256").update(text).digest("hex").slice(0, 16)}`;
      names.set(text, name);
    }
    return name;
  };

  async function query(on: Queryable, text: string, values: readonly unknown[]): Promise<pg.QueryResult<Row>> {
    options.onQuery?.(text);
    return on.query<Row>({ name: nameOf(text), text, values: values.map(pgValue), types });
  }

  async function guarded<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (e) {
      throw storeError(e);
    }
  }

  /** `body` in a transaction on one pooled connection. */
  async function transaction<T>(body: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return guarded(async () => {
      const client = await pool.connect();
      let broken: Error | undefined;
      try {
        await query(client, "BEGIN", []);
        try {
          const result = await body(client);
          await query(client, "COMMIT", []);
          return result;
        } catch (e) {
          await query(client, "ROLLBACK", []).catch((rollback: unknown) => {
            broken = rollback instanceof Error ? rollback : new Error(String(rollback));
          });
          throw e;
        }
      } finally {
        client.release(broken);
      }
    });
  }

  const readSql = SQL.signinReadSql("postgresql");
  const ipFailuresSql = SQL.ipFailuresSql("postgresql");

  return {
    async readSignin(q) {
      const { rows } = await guarded(() => query(pool, readSql, SQL.signinReadParams(q)));
      return snapshotOf(rows[0]!, q);
    },

    async failuresFromIp(ip, since, cap) {
      const { rows } = await guarded(() => query(pool, ipFailuresSql, [ip, since, cap]));
      return Number(rows[0]!["n"]);
    },

    async nthRecentFailureFromIp(ip, since, n) {
      const { rows } = await guarded(() => query(pool, SQL.NTH_RECENT_ADDRESS_FAILURE_SQL, [ip, since, n - 1]));
      return dateOf(rows[0]?.["at"]);
    },

    async commitSignin(write) {
      const { text, values } = signinWriteStatement(write);
      let rows: Row[];
      try {
        ({ rows } = await query(pool, text, values));
      } catch (e) {
        throw conflictOf(e) ?? storeError(e);
      }
      if (rows.length === 0) throw new SigninConflict("status");
      return userOf(rows[0]!);
    },

    refresh(tokenHash, now, decide) {
      return transaction(async (client): Promise<RefreshDecision> => {
        // Spending is the race arbiter: of two callers presenting one token, one changes the row
        // (the other waits for its row lock, then finds it spent).
        const spent = (await query(client, SQL.SPEND_REFRESH_SQL, [now, tokenHash])).rowCount ?? 0;
        const row = (await query(client, SQL.REFRESH_STATE_SQL, [tokenHash])).rows[0];
        const state = row === undefined ? null : refreshStateOf(row, spent === 1);
        const decision = decide(state);
        if (decision.kind === "rotate") {
          // The new token, the session's touch and the audit record: one statement.
          const t = decision.next;
          await query(client, ROTATE_SQL, [
            t.id,
            t.sessionId,
            t.tokenHash,
            t.createdAt,
            t.expiresAt,
            now,
            ...auditRowValues(decision.audit),
          ]);
          return decision;
        } else if (decision.revokeSession !== null) {
          await query(client, SQL.REVOKE_SESSION_SQL, [now, "refresh_token_reuse", decision.revokeSession]);
        } else if (spent === 1 && state !== null) {
          // Refused without a rotation: the token stays unspent (see the SQLite store).
          await query(client, SQL.UNSPEND_REFRESH_SQL, [state.tokenId]);
        }
        if (decision.audit !== null) await query(client, SQL.INSERT_AUDIT_SQL, auditRowValues(decision.audit));
        return decision;
      });
    },

    async findSession(sessionId) {
      const { rows } = await guarded(() => query(pool, SQL.FIND_SESSION_SQL, [sessionId]));
      const row = rows[0];
      if (row === undefined) return null;
      return sessionWithStatusOf(row);
    },

    async findUser(userId) {
      const { rows } = await guarded(() => query(pool, SQL.FIND_USER_SQL, [userId]));
      return rows[0] === undefined ? null : userOf(rows[0]);
    },
  };
}

/** A refresh's rotation in one statement: $1–$5 the new token, $6 now, $7–$20 the audit record. */
const ROTATE_SQL = `WITH t AS (INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)),
s AS (UPDATE sessions SET last_used_at = $6 WHERE id = $2)
INSERT INTO audit_events (${SQL.AUDIT_COLUMNS})
VALUES ($7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)`;

/**
 * A sign-in's whole write as one statement: data-modifying CTEs, each fed by `u` (the user row,
 * created, or touched only while active), so a user disabled since the read makes every part
 * write nothing and the statement return no row. Its shape depends on the write's kind and on what
 * the read found fresh (core/last-seen.ts: no part for those); each shape is its own named statement.
 */
function signinWriteStatement(write: SigninWrite): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  const p = (value: unknown, cast = "") => {
    values.push(value ?? null);
    return `$${values.length}${cast}`;
  };
  const { account } = write;
  const challenge = "challenge" in write ? write.challenge : null;
  const at = p(write.at, "::timestamp");
  // Last-seen times are written again only when stale (core/last-seen.ts).
  let stale: string | undefined;
  const staleAt = (column: string) => {
    stale ??= p(SQL.staleBefore(write.at), "::timestamp");
    return `(${column} IS NULL OR ${column} < ${stale})`;
  };
  const ctes: string[] = [];
  const userColumns = [
    "id",
    "username",
    "email",
    "email_verified",
    "phone",
    "status",
    "locked_until",
    "must_change_password",
    "created_at",
  ].join(", ");

  if (account.kind === "create") {
    const u = account.user;
    ctes.push(`u AS (INSERT INTO users (id, username, email, email_normalized, email_verified, phone, status, must_change_password, created_at, updated_at, last_signin_at)
      VALUES (${p(u.id)}, ${p(u.username)}, ${p(u.email)}, ${p(u.emailNormalized)}, ${p(u.emailVerified, "::boolean")}, ${p(u.phone)}, 'active', false,
        ${p(u.createdAt, "::timestamp")}, ${at}, ${challenge === null ? at : "NULL"}) RETURNING ${userColumns})`);
  } else {
    // The row lock makes a concurrent disable wait for this commit (and a disable that committed
    // first leaves `u` empty, so nothing is written). Waiting for MFA touches nothing of an
    // existing user (a share lock); a completed sign-in writes its last sign-in only when stale,
    // so it locks the row for update from the start: share-locking first and then updating would
    // deadlock two sign-ins of one user that both found it stale (each waiting for the other's
    // share lock). A lock is not a row version: a fresh sign-in still writes nothing to the row.
    const userId = p(account.userId);
    const lock = challenge === null ? "FOR NO KEY UPDATE" : "FOR SHARE";
    ctes.push(`u AS (SELECT ${userColumns} FROM users WHERE id = ${userId} AND ${SQL.activeAt("users", at)} ${lock})`);
    if (challenge === null) {
      ctes.push(`ut AS (UPDATE users SET last_signin_at = ${at}, updated_at = ${at}
        WHERE id = ${userId} AND ${staleAt("last_signin_at")} AND EXISTS (SELECT 1 FROM u))`);
    }
  }
  const identity = account.kind === "existing" ? null : account.identity;
  if (identity !== null && (account.kind === "create" || challenge === null)) {
    ctes.push(`i AS (INSERT INTO identities (id, user_id, issuer, subject, provider, email, email_verified, created_at, last_signin_at)
      SELECT ${p(identity.id)}, u.id, ${p(identity.issuer)}, ${p(identity.subject)}, ${p(identity.provider)}, ${p(identity.email)},
        ${p(identity.emailVerified, "::boolean")}, ${at}, ${at} FROM u)`);
  } else if (account.kind === "existing" && challenge === null && account.identityFresh !== true) {
    // Written only when stale; read fresh (core/last-seen.ts), it has no part here at all.
    ctes.push(`i AS (UPDATE identities SET last_signin_at = ${at}
      WHERE id = ${p(account.identityId)} AND ${staleAt("last_signin_at")} AND EXISTS (SELECT 1 FROM u))`);
  }
  if (challenge !== null) {
    const c = challenge;
    ctes.push(`c AS (INSERT INTO mfa_challenges (id, token_hash, user_id, identity_id, provider, device_key, ip, user_agent, amr, risk,
        context, methods, pending_identity, attempts, created_at, expires_at, client_id)
      SELECT ${p(c.id)}, ${p(c.tokenHash)}, u.id, ${p(c.identityId)}, ${p(c.provider)}, ${p(c.deviceKey)}, ${p(c.ip)},
        ${p(c.userAgent?.slice(0, 512))}, ${p(JSON.stringify(c.amr))}, ${p(JSON.stringify(c.risk))}, ${p(JSON.stringify(c.context))},
        ${p(JSON.stringify(c.methods))}, ${p(c.pendingIdentity === null ? null : JSON.stringify(c.pendingIdentity))}, 0,
        ${p(c.createdAt, "::timestamp")}, ${p(c.expiresAt, "::timestamp")}, ${p(c.clientId ?? null)} FROM u)`);
  } else if ("session" in write) {
    const { session: s, refreshToken: t, seen } = write;
    const identityId = account.kind === "existing" ? account.identityId : account.identity.id;
    // auth_time is the sign-in itself: the same parameter as created_at, in the same statement.
    const created = p(s.createdAt, "::timestamp");
    ctes.push(`s AS (INSERT INTO sessions (id, user_id, identity_id, provider, amr, ip, user_agent, created_at, last_used_at, expires_at,
        auth_time, client_id)
      SELECT ${p(s.id)}, u.id, ${p(identityId)}, ${p(s.provider)}, ${p(JSON.stringify(s.amr))}, ${p(s.client.ip)},
        ${p(s.client.userAgent?.slice(0, 512))}, ${created}, ${created},
        ${p(s.expiresAt, "::timestamp")}, ${created}, ${p(s.client.oauthClientId ?? null)} FROM u RETURNING id)`);
    ctes.push(`r AS (INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at)
      SELECT ${p(t.id)}, s.id, ${p(t.tokenHash)}, ${p(t.createdAt, "::timestamp")}, ${p(t.expiresAt, "::timestamp")} FROM s)`);
    // A device or network read fresh (seen.fresh) gets no part at all: each part, even one that
    // writes nothing, is an index probe and a node of the plan to run. Otherwise, a known one:
    // inserting does nothing, and the update (the statement's snapshot sees the row) writes only a
    // stale sighting. Not ON CONFLICT DO UPDATE … WHERE, which locks (writes) the row even when it
    // updates nothing.
    const userId = "(SELECT id FROM u)";
    if (seen?.deviceKey != null && seen.fresh?.device !== true) {
      const key = p(seen.deviceKey);
      ctes.push(`d AS (INSERT INTO user_devices (user_id, device_key, first_seen_at, last_seen_at)
        SELECT u.id, ${key}, ${at}, ${at} FROM u ON CONFLICT (user_id, device_key) DO NOTHING)`);
      ctes.push(`dt AS (UPDATE user_devices SET last_seen_at = ${at}
        WHERE user_id = ${userId} AND device_key = ${key} AND ${staleAt("last_seen_at")})`);
    }
    if (seen?.trustedDeviceId != null) {
      // A trusted device's credential skipped MFA: its last use, in the same statement.
      ctes.push(
        `td AS (UPDATE trusted_devices SET last_used_at = ${at} WHERE id = ${p(seen.trustedDeviceId)} AND EXISTS (SELECT 1 FROM u))`,
      );
    }
    if (seen?.network != null && seen.fresh?.network !== true) {
      const [network, country] = [p(seen.network), p(seen.geo?.country ?? null)];
      const [latitude, longitude] = [
        p(seen.geo?.latitude ?? null, "::double precision"),
        p(seen.geo?.longitude ?? null, "::double precision"),
      ];
      ctes.push(`n AS (INSERT INTO user_networks (user_id, network, country, latitude, longitude, first_seen_at, last_seen_at)
        SELECT u.id, ${network}, ${country}, ${latitude}, ${longitude}, ${at}, ${at} FROM u ON CONFLICT (user_id, network) DO NOTHING)`);
      ctes.push(`nt AS (UPDATE user_networks SET country = ${country}, latitude = ${latitude}, longitude = ${longitude}, last_seen_at = ${at}
        WHERE user_id = ${userId} AND network = ${network} AND (${staleAt("last_seen_at")} OR country IS DISTINCT FROM ${country}
          OR latitude IS DISTINCT FROM ${latitude} OR longitude IS DISTINCT FROM ${longitude}))`);
    }
  }
  (write.uses ?? []).forEach((use, i) => {
    ctes.push(
      `t${i} AS (INSERT INTO used_id_tokens (key, expires_at) SELECT ${p(use.key)}, ${p(use.expiresAt, "::timestamp")} FROM u)`,
    );
  });
  ctes.push(`a AS (INSERT INTO audit_events (${SQL.AUDIT_COLUMNS})
    SELECT ${auditRowValues(write.audit)
      .map((v, i) => p(v, i === 1 ? "::timestamp" : ""))
      .join(", ")} FROM u)`);
  const text = `WITH ${ctes.join(",\n")}
SELECT u.*, (SELECT pc.changed_at FROM password_credentials pc WHERE pc.user_id = u.id) AS password_changed_at FROM u`;
  return { text, values };
}

/** A unique violation of a sign-in's write as the core's SigninConflict. */
function conflictOf(e: unknown): SigninConflict | null {
  if ((e as { code?: unknown })?.code !== "23505") return null;
  const constraint = String((e as { constraint?: unknown }).constraint ?? "");
  if (constraint.includes("username")) return new SigninConflict("username", { cause: e });
  if (constraint.includes("used_id_tokens")) return new SigninConflict("replay", { cause: e });
  if (constraint.includes("issuer") || constraint.includes("subject"))
    return new SigninConflict("identity", { cause: e });
  return null;
}
