import { describe, expect, it } from "vitest";
import { createAuditLog } from "../../src/store/account-store.ts";
import { testDatabaseKinds, useMigratedDatabase } from "../support/databases.ts";

const DAY = 86_400_000;
const now = new Date("2026-09-01T12:00:00Z");

/** `audit.retention_days`: the hourly purge deletes audit rows older than the retention, all of them, in batches. */
for (const kind of testDatabaseKinds()) {
  describe(`audit retention on ${kind.dialect}`, kind.suiteOptions, () => {
    const db = useMigratedDatabase(kind, { poolSize: 4, statementTimeoutMs: 10_000 });

    it("purges every row older than the cut-off (more than one batch) and keeps the rest", async () => {
      const row = (i: number, at: Date) => ({
        id: `evt_${kind.dialect}_${i}`,
        at,
        type: "signin.failed",
        code: "id_token_expired",
        ip: "203.0.113.1",
      });
      const old = Array.from({ length: 5_300 }, (_, i) => row(i, new Date(now.getTime() - 91 * DAY - i * 1000)));
      const recent = Array.from({ length: 40 }, (_, i) =>
        row(10_000 + i, new Date(now.getTime() - 89 * DAY + i * 1000)),
      );
      await db().client.auditEvent.createMany({ data: [...old, ...recent] });

      const purged = await createAuditLog(db().client).purgeAuditBefore(new Date(now.getTime() - 90 * DAY));
      expect(purged).toBe(old.length);
      expect(await db().client.auditEvent.count()).toBe(recent.length);
      expect(await db().client.auditEvent.count({ where: { at: { lt: new Date(now.getTime() - 90 * DAY) } } })).toBe(0);
      // Nothing left to purge: a second run deletes nothing.
      expect(await createAuditLog(db().client).purgeAuditBefore(new Date(now.getTime() - 90 * DAY))).toBe(0);
    });
  });
}
