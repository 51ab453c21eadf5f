import type { PasswordCredential, User } from "../../gen/prisma/sqlite/client.ts";
import type { UserStatus } from "../core/model.ts";
import type { AdminStore, AdminUserRecord, AuditEntry } from "../core/ports/admin.ts";
import { auditRow, type UserRow, userFromRow, userSelect } from "./prisma-rows.ts";
import type { Db } from "./database.ts";
import { guarded, storeError } from "./prisma-errors.ts";

const adminUserSelect = {
  ...userSelect,
  statusReason: true,
  lastSigninAt: true,
  password: { select: { changedAt: true } },
} as const;

/** A user row as `adminUserSelect` reads it (types from the generated client). */
type AdminUserRow = UserRow &
  Pick<User, "statusReason" | "lastSigninAt"> & { password: Pick<PasswordCredential, "changedAt"> | null };

function adminUserFromRow(row: AdminUserRow): AdminUserRecord {
  const { statusReason, lastSigninAt, password, ...user } = row;
  return { ...userFromRow(user), passwordChangedAt: password?.changedAt ?? null, statusReason, lastSigninAt };
}

/** Thrown inside a transaction to roll it back with a refusal. */
class Refused extends Error {
  readonly kind: "last_identity" | "identity_not_found";
  constructor(kind: "last_identity" | "identity_not_found") {
    super(kind);
    this.kind = kind;
  }
}

/** What the admin tool reads and changes, on Prisma. */
export function createAdminStore(db: Db): AdminStore {
  return {
    async listUsers(filter) {
      const rows = await guarded(() =>
        db.user.findMany({
          where: filter.status === undefined ? {} : { status: filter.status },
          orderBy: [{ createdAt: "desc" }, { id: "desc" }],
          take: filter.limit,
          select: adminUserSelect,
        }),
      );
      return rows.map(adminUserFromRow);
    },

    async findUserById(id) {
      const row = await guarded(() => db.user.findUnique({ where: { id }, select: adminUserSelect }));
      return row === null ? null : adminUserFromRow(row);
    },

    async findUserByUsername(username) {
      const row = await guarded(() => db.user.findUnique({ where: { username }, select: adminUserSelect }));
      return row === null ? null : adminUserFromRow(row);
    },

    async findUsersByEmail(emailNormalized) {
      const rows = await guarded(() =>
        db.user.findMany({
          where: { emailNormalized },
          select: adminUserSelect,
          orderBy: { createdAt: "asc" },
          take: 20,
        }),
      );
      return rows.map(adminUserFromRow);
    },

    async userDetail(userId, now) {
      const row = await guarded(() =>
        db.user.findUnique({
          where: { id: userId },
          select: {
            ...adminUserSelect,
            identities: {
              orderBy: { createdAt: "asc" },
              select: {
                id: true,
                issuer: true,
                subject: true,
                provider: true,
                email: true,
                emailVerified: true,
                createdAt: true,
                lastSigninAt: true,
              },
            },
            mfaFactors: {
              orderBy: { createdAt: "asc" },
              select: { id: true, type: true, confirmedAt: true, createdAt: true },
            },
            _count: {
              select: {
                sessions: { where: { revokedAt: null, expiresAt: { gt: now } } },
                recoveryCodes: { where: { usedAt: null } },
              },
            },
          },
        }),
      );
      if (row === null) return null;
      const { identities, mfaFactors, _count, ...user } = row;
      return {
        user: adminUserFromRow(user),
        identities,
        activeSessions: _count.sessions,
        factors: mfaFactors,
        unusedRecoveryCodes: _count.recoveryCodes,
      };
    },

    async setStatus(change) {
      try {
        return await db.$transaction(async (tx) => {
          await tx.user.update({
            where: { id: change.userId },
            data: {
              status: change.status satisfies UserStatus,
              lockedUntil: change.lockedUntil,
              statusReason: change.reason,
            },
            select: { id: true },
          });
          // Disabled or locked: no device keeps skipping MFA (trust does not come back on enable).
          if (change.status !== "active") await tx.trustedDevice.deleteMany({ where: { userId: change.userId } });
          const revoked =
            change.revokeSessions === null
              ? { count: 0 }
              : await tx.session.updateMany({
                  where: { userId: change.userId, revokedAt: null },
                  data: { revokedAt: change.at, revokedReason: change.revokeSessions },
                });
          await tx.auditEvent.create({
            data: auditRow({ ...change.audit, detail: { ...change.audit.detail, revoked_sessions: revoked.count } }),
            select: { id: true },
          });
          return { revokedSessions: revoked.count };
        });
      } catch (e) {
        throw storeError(e);
      }
    },

    async setMustChangePassword(userId, value, _at, audit) {
      try {
        await db.$transaction([
          db.user.update({ where: { id: userId }, data: { mustChangePassword: value }, select: { id: true } }),
          db.auditEvent.create({ data: auditRow(audit), select: { id: true } }),
        ]);
      } catch (e) {
        throw storeError(e);
      }
    },

    async unlinkIdentity(unlink) {
      try {
        return await db.$transaction(async (tx) => {
          const deleted = await tx.identity.deleteMany({ where: { id: unlink.identityId, userId: unlink.userId } });
          if (deleted.count !== 1) throw new Refused("identity_not_found");
          const remaining = await tx.identity.count({ where: { userId: unlink.userId } });
          if (remaining === 0 && !unlink.allowLast) throw new Refused("last_identity");
          const revoked =
            unlink.revokeSessionsOfProvider === null
              ? { count: 0 }
              : await tx.session.updateMany({
                  where: { userId: unlink.userId, provider: unlink.revokeSessionsOfProvider, revokedAt: null },
                  data: { revokedAt: unlink.at, revokedReason: "identity_unlinked" },
                });
          await tx.auditEvent.create({
            data: auditRow({ ...unlink.audit, detail: { ...unlink.audit.detail, revoked_sessions: revoked.count } }),
            select: { id: true },
          });
          return { kind: "unlinked" as const, revokedSessions: revoked.count };
        });
      } catch (e) {
        if (e instanceof Refused) return { kind: e.kind };
        throw storeError(e);
      }
    },

    async listAudit(userId, limit): Promise<AuditEntry[]> {
      const rows = await guarded(() =>
        db.auditEvent.findMany({ where: { userId }, orderBy: [{ at: "desc" }, { id: "desc" }], take: limit }),
      );
      return rows.map(({ userId: _user, detail, ...row }) => ({ ...row, detail: parseDetail(detail) }));
    },
  };
}

function parseDetail(detail: string | null): Record<string, unknown> | null {
  if (detail === null) return null;
  try {
    const parsed: unknown = JSON.parse(detail);
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : { value: parsed };
  } catch {
    return { raw: detail };
  }
}
