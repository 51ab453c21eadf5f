/**
 * Storage faults become `unavailable` with a reason, whichever way the driver's code arrives: on
 * better-sqlite3's or pg's own error, or inside Prisma's known request error (the shapes below are
 * the ones those libraries throw; test/e2e/storage-faults.e2e.test.ts provokes the real ones the
 * engines can be made to give: SQLITE_READONLY, SQLITE_FULL, 25006).
 */
import { describe, expect, it } from "vitest";
import { DomainError } from "../../src/core/errors.ts";
import { storageFault, storeError } from "../../src/store/prisma-errors.ts";

/** better-sqlite3's SqliteError and pg's DatabaseError: an Error with the engine's code. */
function driverError(code: string): Error {
  return Object.assign(new Error("engine says no"), { code });
}

/** PrismaClientKnownRequestError (P2039/P2010) carrying the adapter's error, as Prisma 6 throws it. */
function prismaError(code: string): Error {
  const cause = code.startsWith("SQLITE_")
    ? {
        originalCode: code,
        originalMessage: "engine says no",
        kind: "sqlite",
        extendedCode: 1,
        message: "engine says no",
      }
    : {
        originalCode: code,
        originalMessage: "engine says no",
        kind: "postgres",
        code,
        severity: "ERROR",
        message: "engine says no",
      };
  return Object.assign(new Error("Database error"), {
    code: "P2039",
    meta: { modelName: "AuditEvent", driverAdapterError: { name: "DriverAdapterError", cause } },
  });
}

const cases: [string, string][] = [
  ["SQLITE_FULL", "database_full"],
  ["SQLITE_READONLY", "database_read_only"],
  ["SQLITE_READONLY_DBMOVED", "database_read_only"],
  ["SQLITE_CORRUPT", "database_corrupt"],
  ["SQLITE_NOTADB", "database_corrupt"],
  ["SQLITE_IOERR_WRITE", "database_io_error"],
  ["SQLITE_CANTOPEN", "database_io_error"],
  ["53100", "database_full"],
  ["53200", "database_overloaded"],
  ["53300", "database_overloaded"],
  ["25006", "database_read_only"],
  ["XX001", "database_corrupt"],
  ["XX002", "database_corrupt"],
  ["58030", "database_io_error"],
  ["57P01", "database_shutting_down"],
  ["57P03", "database_shutting_down"],
];

describe("storage faults", () => {
  for (const [code, fault] of cases) {
    it(`${code} is ${fault} and answers unavailable, from the driver and through Prisma`, () => {
      for (const e of [driverError(code), prismaError(code)]) {
        expect(storageFault(e)).toBe(fault);
        const mapped = storeError(e);
        expect(mapped).toBeInstanceOf(DomainError);
        expect((mapped as DomainError).code).toBe("unavailable");
        expect((mapped as DomainError).cause).toBe(e);
        expect((mapped as DomainError).message).not.toMatch(/engine|SQLITE|\d{5}/);
      }
    });
  }

  it("other errors pass on unchanged: constraint violations, syntax errors, Prisma's own codes", () => {
    for (const e of [
      driverError("SQLITE_CONSTRAINT_UNIQUE"),
      driverError("23505"),
      prismaError("42601"),
      Object.assign(new Error("unique"), { code: "P2002", meta: { target: ["username"] } }),
    ]) {
      expect(storageFault(e)).toBeNull();
      expect(storeError(e)).toBe(e);
    }
  });
});
