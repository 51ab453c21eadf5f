/**
 * Concurrent sign-ins of one user on PostgreSQL never deadlock. Each write locks the user's row
 * (the race guard against a concurrent disable) and, when its last sign-in is stale, updates it.
 * Taking a share lock first and updating after deadlocked two such sign-ins that both held the
 * share lock and each waited for the other's to update (found by the bench's one-user load: 13
 * deadlocks, 28 failed sign-ins). Here the interleaving is forced rather than hoped for: a reader
 * holds a share lock on the row while the sign-ins arrive, so with share-then-update they all get
 * their share locks beside it and meet at the update once it lets go.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database } from "../../src/store/database.ts";
import { createHotStore } from "../../src/store/hot/hot-store.ts";
import { type MigratedDatabase, openMigratedDatabase, postgresKind } from "../support/databases.ts";
import { newUserWrite, signinWrite } from "../support/signin-writes.ts";

const kind = postgresKind();
const SIGNINS = 4;

describe("sign-ins of one user on postgresql", kind.suiteOptions, () => {
  let opened: MigratedDatabase;
  let db: Database;
  beforeAll(async () => {
    opened = await openMigratedDatabase(kind, { poolSize: SIGNINS + 2 });
    db = opened.db;
  });
  afterAll(async () => {
    await opened?.close();
  });

  it("stale and at once, behind another transaction's share lock on the user: none deadlocks, all commit", async () => {
    const store = createHotStore(db);
    const account = newUserWrite();
    const first = new Date("2026-02-01T00:00:00Z");
    await store.commitSignin(signinWrite(account, first));
    const userId = account.user.id;
    const later = new Date(first.getTime() + 5 * 60_000); // the user's last sign-in is stale by then

    const reader = new pg.Client({ connectionString: opened.url });
    await reader.connect();
    try {
      await reader.query("BEGIN");
      await reader.query("SELECT id FROM users WHERE id = $1 FOR SHARE", [userId]);
      const existing = { kind: "existing" as const, userId, identityId: account.identity.id };
      const writes = Array.from({ length: SIGNINS }, () => store.commitSignin(signinWrite(existing, later)));
      // Every sign-in reaches the row and waits behind the reader.
      const deadline = Date.now() + 5000;
      while ((await lockWaiters(reader)) < SIGNINS && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      expect(await lockWaiters(reader)).toBe(SIGNINS);
      await reader.query("COMMIT");
      const outcomes = await Promise.allSettled(writes);
      expect(outcomes.map((o) => (o.status === "rejected" ? String(o.reason) : "ok"))).toEqual(
        Array.from({ length: SIGNINS }, () => "ok"),
      );
    } finally {
      await reader.end();
    }
    const user = await db.client.user.findUniqueOrThrow({ where: { id: userId } });
    expect(user.lastSigninAt).toEqual(later);
    expect(await db.client.session.count({ where: { userId } })).toBe(SIGNINS + 1);
  });
});

/** Backends of this database waiting for a lock (the sign-ins queued behind the reader). */
async function lockWaiters(client: pg.Client): Promise<number> {
  // Inside a transaction the statistics views are a snapshot taken once: take a new one.
  await client.query("SELECT pg_stat_clear_snapshot()");
  const { rows } = await client.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
     WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
  );
  return rows[0]!.n;
}
