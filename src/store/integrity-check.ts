import { existsSync, statSync } from "node:fs";
import Sqlite from "better-sqlite3";

/** A database that must not be served: the process refuses to start (main prints the message). */
export class DatabaseIntegrityError extends Error {
  override readonly name = "DatabaseIntegrityError";
}

/**
 * `PRAGMA quick_check` on a SQLite database file before anything else touches it: a corrupted
 * file would otherwise start, report ready and fail requests (or worse, answer from damaged
 * pages). O(database size) but quicker than `integrity_check` (no index-content cross-check).
 * A missing or empty file (first start) passes.
 */
export function checkSqliteIntegrity(file: string): void {
  if (!existsSync(file) || statSync(file).size === 0) return;
  let problems: string[];
  try {
    const db = new Sqlite(file, { fileMustExist: true, timeout: 5000 });
    try {
      problems = (db.pragma("quick_check(5)") as { quick_check: string }[])
        .map((r) => r.quick_check)
        .filter((r) => r !== "ok");
    } finally {
      db.close();
    }
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (typeof code !== "string" || !/^SQLITE_(CORRUPT|NOTADB)/.test(code)) throw e;
    problems = [(e as Error).message];
  }
  if (problems.length === 0) return;
  throw new DatabaseIntegrityError(
    `the SQLite database ${file} is damaged (PRAGMA quick_check: ${problems.join("; ")}); ` +
      "refusing to start. Restore it from a backup (or recover it with `sqlite3 … .recover`); " +
      "database.quick_check_on_start: false starts without this check.",
  );
}
