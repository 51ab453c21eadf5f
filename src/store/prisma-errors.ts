import { DomainError } from "../core/errors.ts";

/** Prisma's known-request error shape, checked structurally (both dialects' classes differ). */
interface PrismaKnownError {
  code: string;
  meta?: unknown;
}

function isKnown(e: unknown): e is PrismaKnownError {
  return (
    typeof e === "object" &&
    e !== null &&
    typeof (e as { code?: unknown }).code === "string" &&
    /^P\d{4}$/.test((e as { code: string }).code)
  );
}

/**
 * What a unique-constraint violation (P2002) hit, as column names, or null for any other error.
 * With driver adapters SQLite reports the columns (`constraint.fields`) and PostgreSQL the index
 * (`constraint.index`, e.g. `identities_issuer_subject_key`); both name the columns we care about.
 */
export function uniqueViolationFields(e: unknown): string[] | null {
  if (!isKnown(e) || e.code !== "P2002") return null;
  const meta = JSON.stringify(e.meta ?? {});
  const fields = new Set<string>();
  for (const m of meta.matchAll(/(issuer|subject|username|token_hash|tokenHash|generation)/g)) fields.add(m[1]!);
  return [...fields];
}

/** True for errors that mean the database cannot be reached or is overloaded right now. */
export function isUnavailable(e: unknown): boolean {
  if (isKnown(e) && ["P1001", "P1002", "P1008", "P1017", "P2024"].includes(e.code)) return true;
  if (storageFault(e) !== null) return true;
  const text = `${(e as { message?: unknown })?.message ?? ""} ${(e as { code?: unknown })?.code ?? ""}`;
  return /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|57P01|57P03|53300|08006|08001|Connection terminated|timeout exceeded when trying to connect|SQLITE_BUSY|database is locked|Can't reach database/i.test(
    text,
  );
}

/**
 * Why the database cannot store or read data, as a stable reason (readiness reports it), or
 * null when the error is not such a fault. These are the operator's to fix (free space, a
 * writable file or primary, a restore), so requests meanwhile are `unavailable`, not `internal`.
 */
export type StorageFault =
  | "database_full"
  | "database_read_only"
  | "database_corrupt"
  | "database_io_error"
  | "database_overloaded"
  | "database_shutting_down";

/** SQLite's primary result codes (extended ones, SQLITE_READONLY_DBMOVED…, share the prefix). */
const SQLITE_FAULTS: [RegExp, StorageFault][] = [
  [/^SQLITE_FULL/, "database_full"],
  [/^SQLITE_READONLY/, "database_read_only"],
  [/^SQLITE_(CORRUPT|NOTADB)/, "database_corrupt"],
  [/^SQLITE_(IOERR|CANTOPEN)/, "database_io_error"],
];

/** PostgreSQL SQLSTATEs (appendix A of its manual). */
const POSTGRES_FAULTS: [RegExp, StorageFault][] = [
  [/^53100$/, "database_full"], // disk_full
  [/^53/, "database_overloaded"], // insufficient_resources: out of memory, too many connections
  [/^25006$/, "database_read_only"], // read_only_sql_transaction (a standby, default_transaction_read_only)
  [/^XX00[12]$/, "database_corrupt"], // data_corrupted, index_corrupted
  [/^58030$/, "database_io_error"], // io_error
  [/^57P0[1-4]$/, "database_shutting_down"], // admin/crash shutdown, cannot_connect_now, database_dropped
];

/** The storage fault an error reports, if any. */
export function storageFault(e: unknown): StorageFault | null {
  const code = driverCode(e);
  if (code === undefined) return null;
  for (const [pattern, fault] of code.startsWith("SQLITE_") ? SQLITE_FAULTS : POSTGRES_FAULTS) {
    if (pattern.test(code)) return fault;
  }
  return null;
}

/**
 * The database's own code under an error: better-sqlite3's `SQLITE_FULL`, pg's SQLSTATE `25006`,
 * or the same carried by Prisma (a known request error whose driver adapter error has it).
 */
function driverCode(e: unknown): string | undefined {
  for (let c: unknown = e, depth = 0; typeof c === "object" && c !== null && depth < 4; depth++) {
    const o = c as { code?: unknown; originalCode?: unknown; meta?: { driverAdapterError?: unknown }; cause?: unknown };
    if (typeof o.originalCode === "string") return o.originalCode;
    if (o.meta?.driverAdapterError !== undefined) {
      c = o.meta.driverAdapterError; // Prisma's own code (P2039…) says less than the driver's
      continue;
    }
    if (typeof o.code === "string" && (/^SQLITE_/.test(o.code) || /^[0-9A-Z]{5}$/.test(o.code))) return o.code;
    c = o.cause;
  }
  return undefined;
}

/** Public text of an `unavailable`: what the caller can do, nothing about files or servers. */
const UNAVAILABLE_MESSAGE: Record<StorageFault | "outage", string> = {
  outage: "the service is temporarily unavailable; try again shortly",
  database_full: "the service cannot store data right now; try again later",
  database_read_only: "the service cannot store data right now; try again later",
  database_corrupt: "the service cannot read its data right now; try again later",
  database_io_error: "the service cannot read or store data right now; try again later",
  database_overloaded: "the service is temporarily unavailable; try again shortly",
  database_shutting_down: "the service is temporarily unavailable; try again shortly",
};

/** Storage faults as the core sees them: an outage is `unavailable`, anything else passes on. */
export function storeError(e: unknown): unknown {
  if (e instanceof DomainError || !isUnavailable(e)) return e;
  return new DomainError("unavailable", UNAVAILABLE_MESSAGE[storageFault(e) ?? "outage"], { cause: e });
}

/** Runs a store operation, translating storage outages. */
export async function guarded<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (e) {
    throw storeError(e);
  }
}
