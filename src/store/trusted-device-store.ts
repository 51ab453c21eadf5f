import type { TrustedDeviceStore } from "../core/ports/trusted-devices.ts";
import type { Db } from "./database.ts";
import { guarded, storeError } from "./prisma-errors.ts";
import { auditRow } from "./prisma-rows.ts";

/** Trusted devices (forgetting and purging), on Prisma. */
export function createTrustedDeviceStore(db: Db): TrustedDeviceStore {
  return {
    async forget(userId, credentialHash, audit) {
      try {
        const [result] = await db.$transaction([
          db.trustedDevice.deleteMany({ where: { userId, ...(credentialHash === null ? {} : { credentialHash }) } }),
          db.auditEvent.create({ data: auditRow(audit), select: { id: true } }),
        ]);
        return result.count;
      } catch (e) {
        throw storeError(e);
      }
    },

    async purgeExpired(before) {
      const { count } = await guarded(() => db.trustedDevice.deleteMany({ where: { expiresAt: { lt: before } } }));
      return count;
    },
  };
}
