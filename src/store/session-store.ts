import type { UserStatus } from "../core/model.ts";
import type { RefreshDecision, RefreshState, SessionStore } from "../core/ports/sessions.ts";
import { readPasswordChangedAt } from "./account-store.ts";
import { auditRow, sessionFromRow, userFromRow, userSelect, withPassword } from "./prisma-rows.ts";
import type { Db } from "./database.ts";
import { guarded, storeError } from "./prisma-errors.ts";

/** Sessions and refresh-token rotation, on Prisma. */
export function createSessionStore(db: Db): SessionStore {
  return {
    async refresh(tokenHash, now, decide): Promise<RefreshDecision> {
      try {
        return await db.$transaction(async (tx) => {
          // The conditional update is the race arbiter: of concurrent callers presenting the same
          // token, exactly one changes the row (PostgreSQL row lock; SQLite writer lock).
          const spent = await tx.refreshToken.updateMany({ where: { tokenHash, usedAt: null }, data: { usedAt: now } });
          const row = await tx.refreshToken.findUnique({
            where: { tokenHash },
            // The credential's change time rides along for the login result's password fields.
            select: {
              id: true,
              expiresAt: true,
              usedAt: true,
              session: { include: { user: { select: { ...userSelect, password: { select: { changedAt: true } } } } } },
            },
          });
          let state: RefreshState | null = null;
          if (row !== null) {
            const {
              user: { password, ...user },
              ...session
            } = row.session;
            state = {
              tokenId: row.id,
              tokenExpiresAt: row.expiresAt,
              previouslyUsedAt: spent.count === 1 ? null : row.usedAt,
              session: sessionFromRow(session),
              user: withPassword(userFromRow(user), password),
            };
          }
          const decision = decide(state);
          if (decision.kind === "rotate") {
            await tx.refreshToken.create({ data: decision.next });
            await tx.session.update({ where: { id: decision.next.sessionId }, data: { lastUsedAt: now } });
          } else if (decision.revokeSession !== null) {
            await tx.session.updateMany({
              where: { id: decision.revokeSession, revokedAt: null },
              data: { revokedAt: now, revokedReason: "refresh_token_reuse" },
            });
          } else if (spent.count === 1 && state !== null) {
            // Refused without a rotation (user locked, session ended, ...): the token stays
            // unspent, so it works again once the refusal ends (a lock with an end time) instead
            // of counting as reuse then. The row lock taken above is still held.
            await tx.refreshToken.update({
              where: { id: state.tokenId },
              data: { usedAt: null },
              select: { id: true },
            });
          }
          if (decision.audit !== null)
            await tx.auditEvent.create({ data: auditRow(decision.audit), select: { id: true } });
          return decision;
        });
      } catch (e) {
        throw storeError(e);
      }
    },

    async findSession(sessionId) {
      const row = await guarded(() =>
        db.session.findUnique({
          where: { id: sessionId },
          include: { user: { select: { status: true, lockedUntil: true } } },
        }),
      );
      if (row === null) return null;
      const { user, ...session } = row;
      return { ...sessionFromRow(session), user: { status: user.status as UserStatus, lockedUntil: user.lockedUntil } };
    },

    async findSessionByRefreshToken(tokenHash) {
      const row = await guarded(() =>
        db.refreshToken.findUnique({ where: { tokenHash }, select: { session: true, usedAt: true, expiresAt: true } }),
      );
      return row === null
        ? null
        : { ...sessionFromRow(row.session), tokenUsedAt: row.usedAt, tokenExpiresAt: row.expiresAt };
    },

    async listActiveSessions(userId, now) {
      const rows = await guarded(() =>
        db.session.findMany({
          where: { userId, revokedAt: null, expiresAt: { gt: now } },
          orderBy: [{ createdAt: "desc" }, { id: "desc" }],
          take: 100,
        }),
      );
      return rows.map(sessionFromRow);
    },

    async revokeSessions(filter, reason, now, audit) {
      try {
        const [result] = await db.$transaction([
          db.session.updateMany({
            where: {
              userId: filter.userId,
              revokedAt: null,
              ...(filter.sessionId === undefined ? {} : { id: filter.sessionId }),
            },
            data: { revokedAt: now, revokedReason: reason },
          }),
          // Signing out everywhere ends the trust of every device too.
          ...(filter.sessionId === undefined
            ? [db.trustedDevice.deleteMany({ where: { userId: filter.userId } })]
            : []),
          db.auditEvent.create({ data: auditRow(audit), select: { id: true } }),
        ]);
        return result.count;
      } catch (e) {
        throw storeError(e);
      }
    },

    async purgeExpiredSessions(before) {
      // Indexed on expires_at; refresh tokens go with their session (ON DELETE CASCADE).
      const { count } = await guarded(() => db.session.deleteMany({ where: { expiresAt: { lt: before } } }));
      return count;
    },

    async findUser(userId) {
      const [row, credential] = await Promise.all([
        guarded(() => db.user.findUnique({ where: { id: userId }, select: userSelect })),
        readPasswordChangedAt(db, userId),
      ]);
      return row === null ? null : withPassword(userFromRow(row), credential);
    },
  };
}
