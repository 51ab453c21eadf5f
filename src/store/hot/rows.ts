/**
 * Rows of the hot path's own SQL (store/hot/), read back into domain records. Both drivers and
 * Prisma's raw queries hand back slightly different shapes for the same column (SQLite: ISO text
 * and 0/1; PostgreSQL: Date or timestamp text and booleans; JSON built in SQL arrives as text or
 * already parsed), so every value passes through one of the readers below.
 */
import { countedAddressKey } from "../../core/address-limit.ts";
import { countedUserId } from "../user-failures.ts";
import { newId } from "../../core/ids.ts";
import type { AuditRecord } from "../../core/model.ts";
import type { SigninHistory } from "../../core/ports/risk-history.ts";
import type { RefreshState } from "../../core/ports/sessions.ts";
import type { SigninSnapshot, SigninSnapshotQuery } from "../../core/ports/signin.ts";
import type { SessionInfo, UserStatus, UserWithPassword } from "../../core/model.ts";
import type { MfaMethod } from "../../core/risk.ts";
import type { User } from "../../../gen/prisma/sqlite/client.ts";
import { auditDetailJson } from "../prisma-rows.ts";

/** The columns of `users` a login result needs, in the order `userOf` reads them. */
export const USER_COLUMNS = [
  "id",
  "username",
  "email",
  "email_verified",
  "phone",
  "status",
  "locked_until",
  "must_change_password",
  "created_at",
] as const;

/** A row as the drivers return it: column name -> value. */
export type Row = Record<string, unknown>;

/** A timestamp column: a Date, ISO text with or without zone (no zone means UTC), or epoch ms. */
export function dateOf(value: unknown): Date | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) return value;
  if (typeof value === "number" || typeof value === "bigint") return new Date(Number(value));
  const text = String(value);
  // PostgreSQL `timestamp` text ("2026-12-01 10:00:00.123" / JSON "2026-12-01T10:00:00.123") is UTC here.
  return new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(text) ? text : `${text.replace(" ", "T")}Z`);
}

function boolOf(value: unknown): boolean {
  return value === true || value === 1 || value === 1n || value === "1" || value === "t" || value === "true";
}

function stringOrNull(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value);
}

/** JSON built in SQL: text from SQLite and raw queries, already parsed from pg. */
function jsonOf<T>(value: unknown): T | null {
  if (value === null || value === undefined) return null;
  return (typeof value === "string" ? JSON.parse(value) : value) as T;
}

type UserFields = Pick<
  User,
  | "id"
  | "username"
  | "email"
  | "emailVerified"
  | "phone"
  | "status"
  | "lockedUntil"
  | "mustChangePassword"
  | "createdAt"
>;

/** A user with its password change time, from a row carrying USER_COLUMNS and `password_changed_at`. */
export function userOf(row: Row): UserWithPassword {
  const user: UserFields = {
    id: String(row["id"]),
    username: String(row["username"]),
    email: stringOrNull(row["email"]),
    emailVerified: boolOf(row["email_verified"]),
    phone: stringOrNull(row["phone"]),
    status: String(row["status"]),
    lockedUntil: dateOf(row["locked_until"]),
    mustChangePassword: boolOf(row["must_change_password"]),
    createdAt: dateOf(row["created_at"])!,
  };
  return { ...user, status: user.status as UserStatus, passwordChangedAt: dateOf(row["password_changed_at"]) };
}

/** The same user from a JSON array in USER_COLUMNS order plus the password change time. */
function userOfArray(values: readonly unknown[]): UserWithPassword {
  const row: Row = {};
  USER_COLUMNS.forEach((column, i) => (row[column] = values[i]));
  row["password_changed_at"] = values[USER_COLUMNS.length];
  return userOf(row);
}

/** A session row (`sessions.*`) as the core sees it. */
function sessionOf(row: Row, prefix = ""): SessionInfo {
  const at = (c: string) => row[`${prefix}${c}`];
  return {
    id: String(at("id")),
    userId: String(at("user_id")),
    provider: stringOrNull(at("provider")),
    amr: JSON.parse(String(at("amr"))) as string[],
    ip: stringOrNull(at("ip")),
    userAgent: stringOrNull(at("user_agent")),
    createdAt: dateOf(at("created_at"))!,
    lastUsedAt: dateOf(at("last_used_at"))!,
    expiresAt: dateOf(at("expires_at"))!,
    revokedAt: dateOf(at("revoked_at")),
    // Sessions from before the column have none: they signed in when they were created.
    authTime: dateOf(at("auth_time")) ?? dateOf(at("created_at"))!,
    mfaAt: dateOf(at("mfa_at")),
    clientId: stringOrNull(at("client_id")),
  };
}

/**
 * The risk history from the facts the sign-in read gathers (see sql.ts): the device's row (or
 * whether any device was seen), the presented credential's trusted device, the recent networks
 * newest first, failures and second factors.
 */
function historyOf(row: Row, network: string | null): SigninHistory {
  // [1, last seen] for the attempt's device, [0] when only some other device was seen.
  const device = jsonOf<[unknown, unknown?]>(row["device"]);
  const trusted = jsonOf<[unknown, unknown]>(row["trusted_device"]);
  const totp = jsonOf<[unknown, unknown]>(row["totp"]);
  const networks = jsonOf<[string, string | null, number | null, number | null, unknown][]>(row["networks"]) ?? [];
  const lastSigninAt = dateOf(row["last_signin_at"]);
  const methods: MfaMethod[] = [];
  if (totp !== null) methods.push("totp");
  // Recovery codes back up an authenticator; without one they complete nothing.
  if (totp !== null && Number(totp[1]) > 0) methods.push("recovery_code");
  if (Number(row["passkeys"] ?? 0) > 0) methods.push("webauthn");
  const located = networks.find((n) => n[2] !== null && n[3] !== null);
  const deviceKnown = device !== null && boolOf(device[0]);
  const own = network === null ? undefined : networks.find((n) => n[0] === network);
  return {
    lastSigninAt,
    deviceKnown,
    deviceSeenAt: deviceKnown ? dateOf(device[1]) : null,
    networkSeen:
      own === undefined
        ? null
        : {
            at: dateOf(own[4])!,
            country: own[1],
            latitude: own[2] === null ? null : Number(own[2]),
            longitude: own[3] === null ? null : Number(own[3]),
          },
    trustedDevice: trusted === null ? null : { id: String(trusted[0]), expiresAt: dateOf(trusted[1])! },
    hasHistory: lastSigninAt !== null || device !== null,
    networkKnown: own !== undefined,
    countries: [...new Set(networks.flatMap((n) => (n[1] === null ? [] : [n[1]])))],
    lastLocation:
      located === undefined
        ? null
        : { latitude: Number(located[2]), longitude: Number(located[3]), at: dateOf(located[4])! },
    recentFailures: Number(row["recent_failures"] ?? 0),
    methods,
  };
}

/** The sign-in's snapshot from the one row of sql.ts `signinReadSql`. */
export function snapshotOf(row: Row, query: SigninSnapshotQuery): SigninSnapshot {
  return {
    linked:
      row["identity_id"] === null || row["identity_id"] === undefined
        ? null
        : {
            identityId: String(row["identity_id"]),
            identityLastSigninAt: dateOf(row["identity_last_signin_at"]),
            user: userOf(row),
            history: query.history === null ? null : historyOf(row, query.history.network),
          },
    emailOwners: (jsonOf<unknown[][]>(row["email_owners"]) ?? []).map(userOfArray),
    ipFailures: Number(row["ip_failures"] ?? 0),
  };
}

/** What a refresh found (sql.ts REFRESH_STATE_SQL), given whether this call spent the token. */
export function refreshStateOf(row: Row, spentNow: boolean): RefreshState {
  return {
    tokenId: String(row["token_id"]),
    tokenExpiresAt: dateOf(row["token_expires_at"])!,
    previouslyUsedAt: spentNow ? null : dateOf(row["token_used_at"]),
    session: sessionOf(row, "s_"),
    user: userOf(row),
  };
}

/** A session with its user's status (sql.ts FIND_SESSION_SQL). */
export function sessionWithStatusOf(
  row: Row,
): SessionInfo & { user: { status: UserStatus; lockedUntil: Date | null } } {
  return {
    ...sessionOf(row),
    user: { status: String(row["user_status"]) as UserStatus, lockedUntil: dateOf(row["user_locked_until"]) },
  };
}

/**
 * An audit record as the values of an audit_events row, in the column order of sql.ts
 * INSERT_AUDIT_SQL (a new time-ordered id first, then `at`): both dialects' writes use it.
 */
export function auditRowValues(event: AuditRecord): unknown[] {
  return [
    newId("evt"),
    event.at,
    event.type,
    event.code ?? null,
    event.userId ?? null,
    event.provider ?? null,
    event.issuer ?? null,
    event.subject ?? null,
    event.client.ip,
    event.client.userAgent?.slice(0, 512) ?? null,
    event.client.requestId,
    auditDetailJson(event),
    countedAddressKey(event),
    countedUserId(event),
  ];
}
