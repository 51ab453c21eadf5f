/**
 * The sign-in's one read through Prisma Client alone (`$queryRawUnsafe` with the same SQL as the
 * driver path). With `database.hot_path: prisma` the whole hot path runs on Prisma: this read,
 * the batched write of account-store.ts and the session store's transactions; `npm run bench`
 * compares it with the driver path.
 */
import type { SigninReader } from "../../core/ports/signin.ts";
import type { Db, Dialect } from "../database.ts";
import { guarded } from "../prisma-errors.ts";
import { type Row, snapshotOf } from "./rows.ts";
import { positional, signinReadParams, signinReadSql } from "./sql.ts";

export function createPrismaSigninReader(db: Db, dialect: Dialect): SigninReader {
  const sql = signinReadSql(dialect);
  const { sql: sqliteText, order } = positional(sql);
  return {
    async readSignin(q) {
      const params = signinReadParams(q);
      const rows = await guarded(() =>
        dialect === "sqlite"
          ? db.$queryRawUnsafe<Row[]>(sqliteText, ...order.map((i) => params[i]))
          : db.$queryRawUnsafe<Row[]>(sql, ...params),
      );
      return snapshotOf(rows[0]!, q);
    },
  };
}
