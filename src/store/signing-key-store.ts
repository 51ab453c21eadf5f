import type { SigningKeyStore } from "../core/ports/signing-keys.ts";
import type { Db } from "./database.ts";
import { guarded, uniqueViolationFields } from "./prisma-errors.ts";

export function createSigningKeyStore(db: Db): SigningKeyStore {
  return {
    async listUsable(now) {
      const rows = await guarded(() =>
        db.signingKey.findMany({
          where: { OR: [{ expiresAt: null }, { expiresAt: { gt: now } }] },
          orderBy: [{ createdAt: "desc" }, { kid: "desc" }],
        }),
      );
      // Newest generation first (not the clock: replicas' clocks differ); keys from before
      // generations existed come after, newest first.
      return rows.sort((a, b) => (b.generation ?? 0) - (a.generation ?? 0));
    },
    async insertNext(key, after) {
      try {
        await db.signingKey.create({ data: { ...key, generation: after + 1 } });
        return true;
      } catch (e) {
        if (uniqueViolationFields(e)?.includes("generation")) return false;
        throw e;
      }
    },
    async retireAllBut(keepKid, at, expiresAt) {
      await guarded(() =>
        db.signingKey.updateMany({
          where: { retiredAt: null, NOT: { kid: keepKid } },
          data: { retiredAt: at, expiresAt },
        }),
      );
    },
  };
}
