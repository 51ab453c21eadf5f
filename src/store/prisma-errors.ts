import { DomainError } from "../core/errors.ts";

/** Prisma's known-request error shape, checked structurally (both dialects' classes differ). */
interface PrismaKnownError {
  code: string;
  meta?: unknown;
}

function isKnown(e: unknown): e is PrismaKnownError {
  return typeof e === "object" && e !== null && typeof (e as { code?: unknown }).code === "string" && /^P\d{4}$/.test((e as { code: string }).code);
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
  const text = `${(e as { message?: unknown })?.message ?? ""} ${(e as { code?: unknown })?.code ?? ""}`;
  return /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|57P01|57P03|53300|08006|08001|Connection terminated|timeout exceeded when trying to connect|SQLITE_BUSY|database is locked|Can't reach database/i.test(text);
}

/** Storage faults as the core sees them: an outage is `unavailable`, anything else passes on. */
export function storeError(e: unknown): unknown {
  if (e instanceof DomainError || !isUnavailable(e)) return e;
  return new DomainError("unavailable", "the service is temporarily unavailable; try again shortly", { cause: e });
}

/** Runs a store operation, translating storage outages. */
export async function guarded<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (e) {
    throw storeError(e);
  }
}
