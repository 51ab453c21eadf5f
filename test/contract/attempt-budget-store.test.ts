/**
 * AttemptBudgetStore on both databases: a guess is reserved before it is checked, under a
 * per-user lock, so concurrent reservations never exceed the budget (the regression: the old
 * count-then-check-then-record let every concurrent guess through).
 */
import { describe, expect, it } from "vitest";
import { createAccountStore } from "../../src/store/account-store.ts";
import { createAttemptBudgetStore } from "../../src/store/attempt-budget-store.ts";
import { testDatabaseKinds, useMigratedDatabase } from "../support/databases.ts";
import { newUserWrite, signinWrite, unique } from "../support/signin-writes.ts";

const client = { ip: null, userAgent: "vitest", requestId: null, deviceId: null };

const at = new Date("2026-04-01T08:00:00Z");
const since = new Date(at.getTime() - 15 * 60_000);

for (const kind of testDatabaseKinds()) {
  describe(`attempt budget store on ${kind.dialect}`, kind.suiteOptions, () => {
    const db = useMigratedDatabase(kind, { poolSize: 10, statementTimeoutMs: 10_000 });

    async function newUser(): Promise<string> {
      const account = newUserWrite({ email: null });
      await createAccountStore(db().client).commitSignin(signinWrite(account, at));
      return account.user.id;
    }

    it("40 concurrent reservations against a budget of 10: exactly 10 are reserved", async () => {
      const budget = createAttemptBudgetStore(db().client);
      const userId = await newUser();
      const results = await Promise.all(
        Array.from({ length: 40 }, () =>
          budget.reserve("current_password", { userId, since, max: 10, now: at, client }),
        ),
      );
      expect(results.filter((r) => r.kind === "reserved")).toHaveLength(10);
      expect(results.filter((r) => r.kind === "exhausted")).toHaveLength(30);
      expect(results.find((r) => r.kind === "exhausted")).toEqual({ kind: "exhausted", nth: at });
    });

    it("a failure keeps its record with the real code; a release frees the slot; older failures fall out", async () => {
      const budget = createAttemptBudgetStore(db().client);
      const userId = await newUser();
      const old = await db().client.auditEvent.create({
        data: {
          id: `evt_${unique()}`,
          at: new Date(since.getTime() - 1000),
          type: "mfa.code_failed",
          code: "mfa_code_invalid",
          userId,
          countedUserId: userId, // as the audit log writes a failure (it counts, but before the window)
        },
      });
      expect(old.id).toMatch(/^evt_/);
      const a = await budget.reserve("second_factor_code", {
        userId,
        since,
        max: 2,
        now: at,
        client,
        detail: { action: "step_up" },
      });
      const b = await budget.reserve("second_factor_code", { userId, since, max: 2, now: at, client });
      expect([a.kind, b.kind]).toEqual(["reserved", "reserved"]);
      expect((await budget.reserve("second_factor_code", { userId, since, max: 2, now: at, client })).kind).toBe(
        "exhausted",
      );
      await budget.fail((a as { id: string }).id, "mfa_code_invalid");
      await budget.release((b as { id: string }).id);
      const rows = await db().client.auditEvent.findMany({
        where: { userId, type: "mfa.code_failed", at: { gte: since } },
      });
      expect(rows.map((r) => [r.code, r.detail])).toEqual([
        ["mfa_code_invalid", JSON.stringify({ action: "step_up" })],
      ]);
      // One slot free again; the password budget is another budget.
      expect((await budget.reserve("second_factor_code", { userId, since, max: 2, now: at, client })).kind).toBe(
        "reserved",
      );
      expect((await budget.reserve("second_factor_code", { userId, since, max: 2, now: at, client })).kind).toBe(
        "exhausted",
      );
      expect((await budget.reserve("current_password", { userId, since, max: 2, now: at, client })).kind).toBe(
        "reserved",
      );
    });
  });
}
