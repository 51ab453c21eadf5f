import type { MfaChallenge, Prisma, Session, User } from "../../gen/prisma/sqlite/client.ts";
import { countedAddressKey } from "../core/address-limit.ts";
import { newId } from "../core/ids.ts";
import { countedUserId } from "./user-failures.ts";
import type {
  AuditRecord,
  NewIdentity,
  NewSession,
  RiskSummary,
  SessionInfo,
  UserRecord,
  UserStatus,
  UserWithPassword,
} from "../core/model.ts";
import type { ChallengeRecord, NewChallenge } from "../core/ports/mfa.ts";
import type { SeenContext } from "../core/ports/risk-history.ts";
import type { MfaMethod } from "../core/risk.ts";
import type { Db } from "./database.ts";

/**
 * Rows on Prisma: domain records to rows and back, each mapping once, row types derived from the
 * generated client (a new column touches the schema, a migration and the mapper that needs it),
 * and the writes both the sign-in and the MFA transactions make. Every Prisma store uses these.
 */

type Tx = Prisma.TransactionClient;

/** The user columns every store reads. */
export const userSelect = {
  id: true,
  username: true,
  email: true,
  emailVerified: true,
  phone: true,
  status: true,
  lockedUntil: true,
  mustChangePassword: true,
  createdAt: true,
} as const;

/** A user row as `userSelect` reads it. */
export type UserRow = Pick<User, keyof typeof userSelect>;

export function userFromRow(row: UserRow): UserRecord {
  return { ...row, status: row.status as UserStatus };
}

/** The user with its local password's change time (null: no local password). */
export function withPassword(user: UserRecord, credential: { changedAt: Date } | null): UserWithPassword {
  return { ...user, passwordChangedAt: credential?.changedAt ?? null };
}

/** The row a new session is stored as. */
export function sessionRow(session: NewSession, identityId: string) {
  return {
    id: session.id,
    userId: session.userId,
    identityId,
    provider: session.provider,
    amr: JSON.stringify(session.amr),
    ip: session.client.ip,
    userAgent: session.client.userAgent?.slice(0, 512) ?? null,
    createdAt: session.createdAt,
    lastUsedAt: session.createdAt,
    expiresAt: session.expiresAt,
    authTime: session.createdAt,
    mfaAt: session.mfaAt ?? null,
    clientId: session.client.oauthClientId ?? null,
  };
}

/**
 * An audit row's detail as stored (JSON text): the record's own detail, plus `client_id` when the
 * request came through the OAuth door, so every row says which client it was (null: the service's own API).
 */
export function auditDetailJson(event: AuditRecord): string | null {
  const clientId = event.client.oauthClientId;
  const detail = clientId == null ? event.detail : { ...event.detail, client_id: clientId };
  return detail === undefined ? null : JSON.stringify(detail);
}

export function auditRow(event: AuditRecord) {
  return {
    id: newId("evt"),
    at: event.at,
    type: event.type,
    code: event.code ?? null,
    userId: event.userId ?? null,
    provider: event.provider ?? null,
    issuer: event.issuer ?? null,
    subject: event.subject ?? null,
    ip: event.client.ip,
    addressKey: countedAddressKey(event),
    countedUserId: countedUserId(event),
    userAgent: event.client.userAgent?.slice(0, 512) ?? null,
    requestId: event.client.requestId,
    detail: auditDetailJson(event),
  };
}

/** A session row with (at least) the columns SessionInfo is made of. */
type SessionRow = Pick<Session, keyof SessionInfo>;

/** A session as the core sees it (amr stored as a JSON array; no auth_time before 0010: created_at). */
export function sessionFromRow(row: SessionRow): SessionInfo {
  return { ...row, amr: JSON.parse(row.amr) as string[], authTime: row.authTime ?? row.createdAt };
}

/** The row a challenge is stored as (JSON columns as text). */
function challengeRow(c: NewChallenge) {
  return {
    id: c.id,
    tokenHash: c.tokenHash,
    userId: c.userId,
    identityId: c.identityId,
    provider: c.provider,
    deviceKey: c.deviceKey,
    ip: c.ip,
    userAgent: c.userAgent?.slice(0, 512) ?? null,
    amr: JSON.stringify(c.amr),
    risk: JSON.stringify(c.risk),
    context: JSON.stringify(c.context),
    methods: JSON.stringify(c.methods),
    pendingIdentity: c.pendingIdentity === null ? null : JSON.stringify(c.pendingIdentity),
    attempts: 0,
    createdAt: c.createdAt,
    expiresAt: c.expiresAt,
    clientId: c.clientId ?? null,
  };
}

/** A challenge row with the columns ChallengeRecord is made of (JSON columns as text). */
type ChallengeRow = Pick<MfaChallenge, keyof ChallengeRecord>;

export function challengeFromRow(row: ChallengeRow): ChallengeRecord {
  return {
    id: row.id,
    userId: row.userId,
    identityId: row.identityId,
    provider: row.provider,
    deviceKey: row.deviceKey,
    amr: JSON.parse(row.amr) as string[],
    // Challenges stored before the summary carried signals have none.
    risk: { signals: [], ...(JSON.parse(row.risk) as Omit<RiskSummary, "signals">) },
    context: JSON.parse(row.context) as SeenContext,
    methods: JSON.parse(row.methods) as MfaMethod[],
    pendingIdentity: row.pendingIdentity === null ? null : (JSON.parse(row.pendingIdentity) as NewIdentity),
    attempts: row.attempts,
    createdAt: row.createdAt,
    expiresAt: row.expiresAt,
    consumedAt: row.consumedAt,
    consumedReason: row.consumedReason as ChallengeRecord["consumedReason"],
    clientId: row.clientId,
  };
}

/**
 * The writes that remember a completed sign-in's device and network (upserts on their keys), and
 * the last use of the trusted device that let it skip MFA, for a batch or an interactive
 * transaction.
 */
export function seenWrites(db: Db | Tx, userId: string, seen: SeenContext, at: Date) {
  const ops = [];
  if (seen.deviceKey !== null) {
    ops.push(
      db.userDevice.upsert({
        where: { userId_deviceKey: { userId, deviceKey: seen.deviceKey } },
        create: { userId, deviceKey: seen.deviceKey, firstSeenAt: at, lastSeenAt: at },
        update: { lastSeenAt: at },
        select: { userId: true },
      }),
    );
  }
  if (seen.trustedDeviceId != null) {
    ops.push(db.trustedDevice.updateMany({ where: { id: seen.trustedDeviceId, userId }, data: { lastUsedAt: at } }));
  }
  if (seen.network !== null) {
    const place = {
      country: seen.geo?.country ?? null,
      latitude: seen.geo?.latitude ?? null,
      longitude: seen.geo?.longitude ?? null,
    };
    ops.push(
      db.userNetwork.upsert({
        where: { userId_network: { userId, network: seen.network } },
        create: { userId, network: seen.network, ...place, firstSeenAt: at, lastSeenAt: at },
        update: { ...place, lastSeenAt: at },
        select: { userId: true },
      }),
    );
  }
  return ops;
}

/** The create of a challenge row, for the sign-in transaction. */
export function challengeCreate(db: Db, challenge: NewChallenge) {
  return db.mfaChallenge.create({ data: challengeRow(challenge), select: { id: true } });
}
