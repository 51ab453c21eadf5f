/**
 * The hot path's SQL, per dialect, written once and run either as prepared statements on the
 * driver (sqlite.ts, postgresql.ts) or through Prisma's raw queries (prisma.ts). Placeholders are
 * PostgreSQL's `$n`; for SQLite `positional()` turns them into `?` with the values in order.
 *
 * Table and column names are those of prisma/schema.prisma (`@@map` / `@map`).
 */
import type { SigninSnapshotQuery } from "../../core/ports/signin.ts";
import type { Dialect } from "../database.ts";
import { FAILURE_TYPES } from "../user-failures.ts";
import { USER_COLUMNS } from "./rows.ts";

/**
 * Counted failures from address key `key` (the address, or its IPv6 network: core/address-list.ts)
 * since `since`: one seek on (address_key, at). Only failures counted against an address carry the
 * key (core/address-limit.ts countedAddressKey, decided when the row is written), so this never
 * walks a busy address's successful sign-ins and needs no type or code filter that a generic plan
 * might apply after the seek. `columns` is what it selects.
 */
const addressFailures = (columns: string, key: string, since: string) =>
  `SELECT ${columns} FROM audit_events WHERE address_key = ${key} AND at >= ${since}`;

/**
 * A user's failures (FAILURE_TYPES) since `since`: a sum of one count per type, each a seek on
 * (counted_user_id, type, at), which only failures carry (user-failures.ts countedUserId), so that
 * a generic plan cannot filter the type after the seek and walk every success of a busy user in
 * the window (measured 5–80 ms per read on PostgreSQL under load).
 */
const userFailuresSum = (user: string, since: string) =>
  FAILURE_TYPES.map(
    (type) =>
      `(SELECT count(*) FROM audit_events a WHERE a.counted_user_id = ${user} AND a.type = '${type}' AND a.at >= ${since})`,
  ).join(" + ");

/**
 * How much network history one sign-in reads: the most recently seen networks. A network not
 * among them counts as new again (a bounded read on every sign-in, by design); devices are looked
 * up by key.
 */
export const RECENT_NETWORKS = 200;

const userColumns = (alias: string) => USER_COLUMNS.map((c) => `${alias}.${c}`).join(", ");

/** `u` is active at time `$at`: the SQL twin of core/user-status.ts assertActive. */
export const activeAt = (u: string, at: string) =>
  `(${u}.status = 'active' OR (${u}.status = 'locked' AND ${u}.locked_until IS NOT NULL AND ${u}.locked_until <= ${at}))`;

function dialectSql(dialect: Dialect) {
  const pg = dialect === "postgresql";
  return {
    jsonArray: pg ? "json_build_array" : "json_array",
    jsonAgg: pg ? "json_agg" : "json_group_array",
    int: pg ? "::int" : "",
    text: pg ? "::text" : "",
    true: pg ? "true" : "1",
  };
}

/**
 * The columns of the sign-in read about user `u` (correlated subqueries: each an index seek or
 * two; the ones that rarely matter run only when needed: recovery codes only with a confirmed
 * authenticator, "any device" only for an unknown one). Recent networks come in one pass, newest
 * first. `device`, `since` and `trusted` name the parameters of the device key, the failures
 * window and the presented device credential's hash (a unique-index seek, bound to the user; a
 * null hash finds nothing).
 * `passkeys` costs one more index seek on webauthn_credentials(user_id) in the same statement,
 * no round trip: a challenge must offer `webauthn` to a user who has a passkey.
 */
function userReadColumns(dialect: Dialect, device: string, since: string, trusted: string): string {
  const d = dialectSql(dialect);
  return `${userColumns("u")}, u.last_signin_at,
  (SELECT p.changed_at FROM password_credentials p WHERE p.user_id = u.id) AS password_changed_at,
  (SELECT ${d.jsonArray}(f.confirmed_at, (SELECT count(*) FROM recovery_codes r WHERE r.user_id = u.id AND r.used_at IS NULL))
     FROM mfa_factors f WHERE f.user_id = u.id AND f.type = 'totp' AND f.confirmed_at IS NOT NULL) AS totp,
  (SELECT count(*) FROM webauthn_credentials w WHERE w.user_id = u.id AND w.flagged_at IS NULL)${d.int} AS passkeys,
  COALESCE((SELECT ${d.jsonArray}(1, d.last_seen_at) FROM user_devices d WHERE d.user_id = u.id AND d.device_key = ${device}),
     (SELECT ${d.jsonArray}(0) FROM user_devices d WHERE d.user_id = u.id LIMIT 1)) AS device,
  (SELECT ${d.jsonArray}(t.id, t.expires_at) FROM trusted_devices t WHERE t.credential_hash = ${trusted} AND t.user_id = u.id) AS trusted_device,
  (SELECT ${d.jsonAgg}(${d.jsonArray}(r.network, r.country, r.latitude, r.longitude, r.last_seen_at)) FROM (
     SELECT n.network, n.country, n.latitude, n.longitude, n.last_seen_at FROM user_networks n
     WHERE n.user_id = u.id ORDER BY n.last_seen_at DESC LIMIT ${RECENT_NETWORKS}) r) AS networks,
  (${userFailuresSum("u.id", since)})${d.int} AS recent_failures`;
}

/** Failed sign-ins from address `ip` since `since`, at most `cap`, as column `ip_failures`. */
function ipFailuresColumn(dialect: Dialect, ip: string, since: string, cap: string): string {
  return `(SELECT count(*) FROM (${addressFailures("1", ip, since)} LIMIT ${cap}) f)${dialectSql(dialect).int} AS ip_failures`;
}

/** The (at most two) users whose verified e-mail is `email`, as JSON column `email_owners`. */
function emailOwnersExpression(dialect: Dialect, email: string): string {
  const d = dialectSql(dialect);
  return `(SELECT ${d.jsonAgg}(${d.jsonArray}(${userColumns("o")}, o.changed_at)) FROM (
       SELECT ${userColumns("eu")}, ep.changed_at FROM users eu LEFT JOIN password_credentials ep ON ep.user_id = eu.id
       WHERE eu.email_normalized = ${email} AND eu.email_verified = ${d.true} LIMIT 2) o)`;
}

/**
 * The sign-in's one read as one statement (PostgreSQL: one round trip; also what Prisma's raw
 * query runs). Parameters: $1 issuer, $2 subject, $3 device key, $4 failures since (null: none),
 * $5 client address, $6 address failures since, $7 cap, $8 verified e-mail, $9 device credential
 * hash. One row: the
 * identity's user (columns null without a link) with its history, the address's failure count,
 * and the e-mail's owners when there is no link.
 */
export function signinReadSql(dialect: Dialect): string {
  const d = dialectSql(dialect);
  return `SELECT i.id AS identity_id, i.last_signin_at AS identity_last_signin_at, ${userReadColumns(dialect, "$3", "$4", "$9")},
  ${ipFailuresColumn(dialect, "$5", "$6", "$7")},
  CASE WHEN i.id IS NULL AND $8${d.text} IS NOT NULL THEN ${emailOwnersExpression(dialect, "$8")} END AS email_owners
FROM (SELECT 1 AS one) one
LEFT JOIN identities i ON i.issuer = $1 AND i.subject = $2
LEFT JOIN users u ON u.id = i.user_id`;
}

/**
 * The same read on SQLite as small statements run back to back in one synchronous turn, which
 * nothing in the process can interleave with (no round trips to save: measured, SQLite runs each
 * lookup alone several times faster than the same lookups as subqueries of one statement).
 */
export const SQLITE_READ = {
  /** $1 issuer, $2 subject. */
  identity: `SELECT id AS identity_id, user_id, last_signin_at AS identity_last_signin_at FROM identities WHERE issuer = $1 AND subject = $2`,
  /** $1 user id. */
  user: `SELECT ${userColumns("u")}, u.last_signin_at,
  (SELECT p.changed_at FROM password_credentials p WHERE p.user_id = u.id) AS password_changed_at FROM users u WHERE u.id = $1`,
  /**
   * $1 user id: [confirmed at, unused recovery codes] of a confirmed authenticator (null without
   * one), and the passkeys not flagged: the user's second factors in one statement.
   */
  factors: `SELECT (SELECT json_array(f.confirmed_at, (SELECT count(*) FROM recovery_codes r WHERE r.user_id = f.user_id AND r.used_at IS NULL))
     FROM mfa_factors f WHERE f.user_id = $1 AND f.type = 'totp' AND f.confirmed_at IS NOT NULL) AS totp,
  (SELECT count(*) FROM webauthn_credentials w WHERE w.user_id = $1 AND w.flagged_at IS NULL) AS passkeys`,
  /** $1 user id, $2 device key. */
  device: `SELECT json_array(1, last_seen_at) AS device FROM user_devices WHERE user_id = $1 AND device_key = $2`,
  /** $1 user id, $2 device credential hash (asked only when one was presented). */
  trustedDevice: `SELECT json_array(id, expires_at) AS trusted_device FROM trusted_devices WHERE credential_hash = $2 AND user_id = $1`,
  /** $1 user id: whether any device was seen (asked only for an unknown one). */
  anyDevice: `SELECT json_array(0) AS device FROM user_devices WHERE user_id = $1 LIMIT 1`,
  /** $1 user id: rows, newest first. */
  networks: `SELECT network, country, latitude, longitude, last_seen_at FROM user_networks WHERE user_id = $1
  ORDER BY last_seen_at DESC LIMIT ${RECENT_NETWORKS}`,
  /**
   * $1 user id: the user's networks in no order, one more than RECENT_NETWORKS at most. When no
   * more than RECENT_NETWORKS come back they are all of them, sorted by the caller; only a user
   * with more needs `networks` (measured: SQLite's sorter costs about as much as the lookup).
   */
  someNetworks: `SELECT network, country, latitude, longitude, last_seen_at FROM user_networks WHERE user_id = $1
  LIMIT ${RECENT_NETWORKS + 1}`,
  /**
   * $1 address, $2 since, $3 cap: a row per counted failure, at most the cap (counted by the
   * caller: measured, a count over a LIMIT subquery costs SQLite a co-routine, about twice this).
   */
  ipFailures: `${addressFailures("1", "$1", "$2")} LIMIT $3`,
  /** $1 user id, $2 since. */
  recentFailures: `SELECT ${userFailuresSum("$1", "$2")} AS recent_failures`,
  /**
   * $1 verified e-mail: the owners as rows of USER_COLUMNS and the password change time (at most
   * two). Rows, not the JSON aggregate PostgreSQL reads: measured, SQLite's aggregate over a
   * LIMIT subquery costs about five times these plain rows (~20 vs ~3.5 µs).
   */
  emailOwners: `SELECT ${userColumns("eu")}, (SELECT ep.changed_at FROM password_credentials ep WHERE ep.user_id = eu.id) AS changed_at
  FROM users eu WHERE eu.email_normalized = $1 AND eu.email_verified = 1 LIMIT 2`,
};

/** The parameters of `signinReadSql` for a query. */
export function signinReadParams(q: SigninSnapshotQuery): unknown[] {
  return [
    q.issuer,
    q.subject,
    q.history?.deviceKey ?? null,
    q.history?.failuresSince ?? null,
    q.ipFailures?.ip ?? null,
    q.ipFailures?.since ?? null,
    q.ipFailures?.cap ?? 0,
    q.verifiedEmail,
    q.history?.trustedDevice ?? null,
  ];
}

/** Failed sign-ins from an address (for refused tokens): $1 address, $2 since, $3 cap. */
export function ipFailuresSql(dialect: Dialect): string {
  return `SELECT count(*)${dialect === "postgresql" ? "::int" : ""} AS n FROM (${addressFailures("1", "$1", "$2")} LIMIT $3) f`;
}

/** The time of the `$3`-th most recent counted failure from address `$1` since `$2`. */
export const NTH_RECENT_ADDRESS_FAILURE_SQL = `${addressFailures("at", "$1", "$2")}
  ORDER BY at DESC LIMIT 1 OFFSET $3`;

/** Marks an ID token used: $1 key, $2 expires at (a second use violates the primary key). */
export const INSERT_USED_ID_TOKEN_SQL = `INSERT INTO used_id_tokens (key, expires_at) VALUES ($1, $2)`;

/** A session with its user's status: $1 session id. */
export const FIND_SESSION_SQL = `SELECT s.*, u.status AS user_status, u.locked_until AS user_locked_until
FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1`;

/** A user with its password change time: $1 user id. */
export const FIND_USER_SQL = `SELECT ${userColumns("u")}, p.changed_at AS password_changed_at
FROM users u LEFT JOIN password_credentials p ON p.user_id = u.id WHERE u.id = $1`;

/** A refresh token with its session, user and password change time: $1 token hash. */
export const REFRESH_STATE_SQL = `SELECT t.id AS token_id, t.expires_at AS token_expires_at, t.used_at AS token_used_at,
  s.id AS s_id, s.user_id AS s_user_id, s.provider AS s_provider, s.amr AS s_amr, s.ip AS s_ip, s.user_agent AS s_user_agent,
  s.created_at AS s_created_at, s.last_used_at AS s_last_used_at, s.expires_at AS s_expires_at,
  s.revoked_at AS s_revoked_at, s.auth_time AS s_auth_time, s.mfa_at AS s_mfa_at, s.client_id AS s_client_id,
  ${userColumns("u")}, p.changed_at AS password_changed_at
FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id JOIN users u ON u.id = s.user_id
LEFT JOIN password_credentials p ON p.user_id = u.id
WHERE t.token_hash = $1`;

/** Spends a refresh token if unspent: $1 at, $2 token hash. */
export const SPEND_REFRESH_SQL = `UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL`;

export const INSERT_REFRESH_SQL = `INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`;
export const TOUCH_SESSION_SQL = `UPDATE sessions SET last_used_at = $1 WHERE id = $2`;
export const REVOKE_SESSION_SQL = `UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL`;
export const UNSPEND_REFRESH_SQL = `UPDATE refresh_tokens SET used_at = NULL WHERE id = $1`;

/** An audit row's columns, in the order of rows.ts auditRowValues. */
export const AUDIT_COLUMNS = `id, at, type, code, user_id, provider, issuer, subject, ip, user_agent, request_id, detail, address_key,
  counted_user_id`;

export const INSERT_AUDIT_SQL = `INSERT INTO audit_events (${AUDIT_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`;

export const INSERT_USER_SQL = `INSERT INTO users (id, username, email, email_normalized, email_verified, phone, status, must_change_password,
  created_at, updated_at, last_signin_at) VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, $10)`;

export const INSERT_IDENTITY_SQL = `INSERT INTO identities (id, user_id, issuer, subject, provider, email, email_verified, created_at, last_signin_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`;

export { staleBefore } from "../../core/last-seen.ts";

/** Whether a last-seen value `$n` (a column) is stale: null or before `$stale`. */
const staleAt = (column: string, stale: string) => `(${column} IS NULL OR ${column} < ${stale})`;

/** Marks an identity signed in when its mark is stale: $1 at, $2 identity id, $3 stale before. */
export const TOUCH_IDENTITY_SQL = `UPDATE identities SET last_signin_at = $1 WHERE id = $2 AND ${staleAt("last_signin_at", "$3")}`;

/** Marks a user signed in: $1 at, $2 user id (asked only when its mark is stale, under the write lock). */
export const TOUCH_USER_SQL = `UPDATE users SET last_signin_at = $1, updated_at = $1 WHERE id = $2`;

/** An existing user, only while active, with its last sign-in and password change time: $1 at, $2 user id. */
export const ACTIVE_USER_SQL = `SELECT ${userColumns("u")}, u.last_signin_at,
  (SELECT p.changed_at FROM password_credentials p WHERE p.user_id = u.id) AS password_changed_at
FROM users u WHERE u.id = $2 AND ${activeAt("u", "$1")}`;

/**
 * A new session; it signed in when it was created ($8 is `auth_time` too); $11 the OAuth client
 * it is bound to (null: the service's own API). A column of the same statement, not a write more.
 */
export const INSERT_SESSION_SQL = `INSERT INTO sessions (id, user_id, identity_id, provider, amr, ip, user_agent, created_at, last_used_at, expires_at, auth_time,
  client_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $8, $11)`;

/** Remembers a device as seen (a known one only when its sighting is stale): $1 user, $2 key, $3 at, $4 stale before. */
export const UPSERT_DEVICE_SQL = `INSERT INTO user_devices (user_id, device_key, first_seen_at, last_seen_at) VALUES ($1, $2, $3, $3)
ON CONFLICT (user_id, device_key) DO UPDATE SET last_seen_at = excluded.last_seen_at WHERE user_devices.last_seen_at < $4`;

/** Records the use of a trusted device's credential: $1 at, $2 trusted device id. */
export const TOUCH_TRUSTED_DEVICE_SQL = `UPDATE trusted_devices SET last_used_at = $1 WHERE id = $2`;

/**
 * Remembers a network with where GeoIP placed it (a known one only when its sighting is stale or
 * its place changed): $1 user, $2 network, $3 country, $4 lat, $5 lon, $6 at, $7 stale before.
 */
export const UPSERT_NETWORK_SQL = `INSERT INTO user_networks (user_id, network, country, latitude, longitude, first_seen_at, last_seen_at)
VALUES ($1, $2, $3, $4, $5, $6, $6)
ON CONFLICT (user_id, network) DO UPDATE SET country = excluded.country, latitude = excluded.latitude,
  longitude = excluded.longitude, last_seen_at = excluded.last_seen_at
WHERE user_networks.last_seen_at < $7 OR user_networks.country IS NOT excluded.country
  OR user_networks.latitude IS NOT excluded.latitude OR user_networks.longitude IS NOT excluded.longitude`;

export const INSERT_CHALLENGE_SQL = `INSERT INTO mfa_challenges (id, token_hash, user_id, identity_id, provider, device_key, ip, user_agent,
  amr, risk, context, methods, pending_identity, attempts, created_at, expires_at, client_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 0, $14, $15, $16)`;

/**
 * `$n` placeholders as `?` for SQLite, with the order in which to pass the values (a `$n` used
 * twice takes its value twice).
 */
export function positional(sql: string): { sql: string; order: number[] } {
  const order: number[] = [];
  const text = sql.replace(/\$(\d+)/g, (_, n: string) => {
    order.push(Number(n) - 1);
    return "?";
  });
  return { sql: text, order };
}
