import type { SigningKeyStore } from "../core/ports.ts";
import type { Db } from "./database.ts";

export function createSigningKeyStore(db: Db): SigningKeyStore {
  return {
    listUsable(now) {
      return db.signingKey.findMany({
        where: { OR: [{ expiresAt: null }, { expiresAt: { gt: now } }] },
        orderBy: [{ createdAt: "desc" }, { kid: "desc" }],
      });
    },
    async insert(key) {
      await db.signingKey.create({ data: key });
    },
    async retire(kid, at, expiresAt) {
      await db.signingKey.updateMany({ where: { kid, retiredAt: null }, data: { retiredAt: at, expiresAt } });
    },
  };
}
