import type { SingleUseMarks } from "../core/ports/single-use.ts";
import type { Db } from "./database.ts";
import { guarded, uniqueViolationFields } from "./prisma-errors.ts";

/**
 * Single-use markers in the `used_id_tokens` table (purged with the others once expired): the
 * primary key makes the first insert win on every replica, on both databases.
 */
export function createSingleUseStore(db: Db): SingleUseMarks {
  return {
    markUsed(use) {
      return guarded(async () => {
        try {
          await db.usedIdToken.create({ data: { key: use.key, expiresAt: use.expiresAt } });
          return true;
        } catch (e) {
          if (uniqueViolationFields(e) !== null) return false;
          throw e;
        }
      });
    },
  };
}
