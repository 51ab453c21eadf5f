import { DomainError } from "../core/errors.ts";
import type { CeremonyRecord, PasskeyRecord, PasskeyStore } from "../core/ports/webauthn.ts";
import type { Db } from "./database.ts";
import { guarded, storeError, uniqueViolationFields } from "./prisma-errors.ts";
import { auditRow } from "./prisma-rows.ts";

type PasskeyRow = Omit<PasskeyRecord, "transports" | "deviceType"> & { transports: string; deviceType: string };

function passkeyOf(row: PasskeyRow): PasskeyRecord {
  return {
    ...row,
    transports: JSON.parse(row.transports) as string[],
    deviceType: row.deviceType === "multiDevice" ? "multiDevice" : "singleDevice",
  };
}

const CEREMONY_SELECT = {
  id: true,
  userId: true,
  purpose: true,
  mfaChallengeId: true,
  sessionId: true,
  expiresAt: true,
  consumedAt: true,
} as const;

/** Passkeys (WebAuthn credentials) and their ceremonies, on Prisma. */
export function createPasskeyStore(db: Db): PasskeyStore {
  return {
    async listPasskeys(userId) {
      const rows = await guarded(() =>
        db.webauthnCredential.findMany({ where: { userId }, orderBy: [{ createdAt: "asc" }, { id: "asc" }] }),
      );
      return rows.map(passkeyOf);
    },

    async findPasskeyByCredentialId(credentialId) {
      const row = await guarded(() => db.webauthnCredential.findUnique({ where: { credentialId } }));
      return row === null ? null : passkeyOf(row);
    },

    async saveCeremony(ceremony) {
      await guarded(() => db.webauthnCeremony.create({ data: ceremony, select: { id: true } }));
    },

    countCeremonies(mfaChallengeId) {
      return guarded(() => db.webauthnCeremony.count({ where: { mfaChallengeId } }));
    },

    countLiveStepUps(sessionId, now) {
      return guarded(() => db.webauthnCeremony.count({ where: { sessionId, expiresAt: { gt: now } } }));
    },

    async findCeremony(challengeHash) {
      const row = await guarded(() =>
        db.webauthnCeremony.findUnique({ where: { challengeHash }, select: CEREMONY_SELECT }),
      );
      return row === null ? null : { ...row, purpose: row.purpose as CeremonyRecord["purpose"] };
    },

    async registerPasskey(ceremonyId, passkey, now, audit) {
      try {
        return await db.$transaction(async (tx) => {
          const spent = await tx.webauthnCeremony.updateMany({
            where: { id: ceremonyId, consumedAt: null, expiresAt: { gt: now } },
            data: { consumedAt: now },
          });
          if (spent.count !== 1) return false;
          await tx.webauthnCredential.create({
            data: { ...passkey, transports: JSON.stringify(passkey.transports) },
            select: { id: true },
          });
          await tx.auditEvent.create({ data: auditRow(audit), select: { id: true } });
          return true;
        });
      } catch (e) {
        if (uniqueViolationFields(e) !== null) {
          throw new DomainError("webauthn_credential_exists", "this passkey is registered already", { cause: e });
        }
        throw storeError(e);
      }
    },

    async renamePasskey(userId, id, name) {
      return guarded(async () => {
        const { count } = await db.webauthnCredential.updateMany({ where: { id, userId }, data: { name } });
        if (count !== 1) return null;
        const row = await db.webauthnCredential.findUnique({ where: { id } });
        return row === null ? null : passkeyOf(row);
      });
    },

    async removePasskey(userId, id, audit) {
      try {
        return await db.$transaction(async (tx) => {
          const { count } = await tx.webauthnCredential.deleteMany({ where: { id, userId } });
          if (count !== 1) return false;
          // Removing a factor ends the device trust earned with the user's factors, as disabling TOTP does.
          await tx.trustedDevice.deleteMany({ where: { userId } });
          await tx.auditEvent.create({ data: auditRow(audit), select: { id: true } });
          return true;
        });
      } catch (e) {
        throw storeError(e);
      }
    },

    async flagPasskey(id, now, audit) {
      try {
        await db.$transaction(async (tx) => {
          await tx.webauthnCredential.updateMany({ where: { id, flaggedAt: null }, data: { flaggedAt: now } });
          await tx.auditEvent.create({ data: auditRow(audit), select: { id: true } });
        });
      } catch (e) {
        throw storeError(e);
      }
    },

    async purgeExpiredCeremonies(before) {
      const { count } = await guarded(() => db.webauthnCeremony.deleteMany({ where: { expiresAt: { lt: before } } }));
      return count;
    },
  };
}
