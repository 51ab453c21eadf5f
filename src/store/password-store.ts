import type { PasswordChangeOutcome, PasswordStore } from "../core/ports/passwords.ts";
import { auditRow, type UserRow, userFromRow, userSelect, withPassword } from "./prisma-rows.ts";
import type { Db } from "./database.ts";
import { guarded, storeError, uniqueViolationFields } from "./prisma-errors.ts";

/** Thrown inside the transaction to roll it back when the compare-and-set lost. */
class LostRace extends Error {}

/** Local password credentials, on Prisma. */
export function createPasswordStore(db: Db): PasswordStore {
  return {
    async loadForChange(userId, sessionId) {
      const [user, session] = await Promise.all([
        guarded(() =>
          db.user.findUnique({
            where: { id: userId },
            select: { ...userSelect, password: { select: { hash: true, changedAt: true } } },
          }),
        ),
        guarded(() =>
          db.session.findUnique({
            where: { id: sessionId },
            select: { userId: true, createdAt: true, revokedAt: true },
          }),
        ),
      ]);
      if (user === null) return null;
      const { password, ...row } = user;
      const live = session !== null && session.userId === userId && session.revokedAt === null;
      return {
        user: withPassword(userFromRow(row), password),
        hash: password?.hash ?? null,
        sessionCreatedAt: live ? session.createdAt : null,
      };
    },

    async commitPasswordChange(write): Promise<PasswordChangeOutcome> {
      try {
        return await db.$transaction(async (tx) => {
          if (write.expectedHash === null) {
            // The first password: the primary key on user_id makes a concurrent first set fail.
            await tx.passwordCredential.create({
              data: { userId: write.userId, hash: write.hash, changedAt: write.at, createdAt: write.at },
            });
          } else {
            // Compare-and-set on the old hash: of two concurrent changes that both proved the
            // same current password, one wins and the other is refused.
            const updated = await tx.passwordCredential.updateMany({
              where: { userId: write.userId, hash: write.expectedHash },
              data: { hash: write.hash, changedAt: write.at },
            });
            if (updated.count !== 1) throw new LostRace();
          }
          const user = await tx.user.update({
            where: { id: write.userId },
            data: { mustChangePassword: false },
            select: userSelect,
          });
          // A new password ends the trust of every device: whoever knew the old one may hold one.
          await tx.trustedDevice.deleteMany({ where: { userId: write.userId } });
          let revokedSessions = 0;
          if (write.revokeOtherSessions !== null) {
            const revoked = await tx.session.updateMany({
              where: { userId: write.userId, revokedAt: null, id: { not: write.revokeOtherSessions.keepSessionId } },
              data: { revokedAt: write.at, revokedReason: write.revokeOtherSessions.reason },
            });
            revokedSessions = revoked.count;
          }
          const audit = { ...write.audit, detail: { ...write.audit.detail, revoked_sessions: revokedSessions } };
          await tx.auditEvent.create({ data: auditRow(audit), select: { id: true } });
          return {
            kind: "changed" as const,
            user: withPassword(userFromRow(user as UserRow), { changedAt: write.at }),
            revokedSessions,
          };
        });
      } catch (e) {
        if (e instanceof LostRace) return { kind: "conflict" };
        if (write.expectedHash === null && uniqueViolationFields(e) !== null) return { kind: "conflict" };
        throw storeError(e);
      }
    },
  };
}
