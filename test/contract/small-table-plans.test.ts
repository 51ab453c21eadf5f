/**
 * A named prepared statement keeps the generic plan it made; the sign-in read's must stay index
 * lookups when it was made on a small table that then grew (a new database, before autovacuum's
 * next ANALYZE). Made with sequential scans, every new user's read walked all of `user_devices`
 * and `users` (measured 0.04 → 1.1–1.4 ms of PostgreSQL time per read with 20,000 users). The
 * service's connections (database.ts) plan with sequential scans off.
 * PostgreSQL, through the hot path's own store on a one-connection pool of the service's making.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type pg from "pg";
import type { SigninSnapshotQuery } from "../../src/core/ports/signin.ts";
import { createPostgresHotStore } from "../../src/store/hot/postgresql.ts";
import type { HotStore } from "../../src/store/hot/sqlite.ts";
import { type MigratedDatabase, openMigratedDatabase, postgresKind } from "../support/databases.ts";

const kind = postgresKind();
const ISSUER = "https://op.test";
const SMALL = 40;
const GROWN = 20_000;
const TABLES = ["users", "identities", "user_devices", "user_networks", "trusted_devices", "audit_events"];

describe(
  "the sign-in read planned on small tables stays index lookups as they grow (postgresql)",
  kind.suiteOptions,
  () => {
    let opened: MigratedDatabase;
    let pool: pg.Pool;
    let store: HotStore;

    /** Users `from`..`to`, each with an identity, a device and a verified e-mail. */
    async function addUsers(from: number, to: number): Promise<void> {
      await pool.query(
        `INSERT INTO users (id, username, email, email_normalized, email_verified, status, must_change_password, created_at, updated_at)
       SELECT 'usr_' || g, 'u' || g, 'u' || g || '@example.com', 'u' || g || '@example.com', true, 'active', false, now(), now()
       FROM generate_series(${from}, ${to}) g`,
      );
      await pool.query(
        `INSERT INTO identities (id, user_id, issuer, subject, provider, created_at)
       SELECT 'idn_' || g, 'usr_' || g, $1, 'sub-' || g, 'dev', now() FROM generate_series(${from}, ${to}) g`,
        [ISSUER],
      );
      await pool.query(
        `INSERT INTO user_devices (user_id, device_key, first_seen_at, last_seen_at)
       SELECT 'usr_' || g, 'id:device-' || g, now(), now() FROM generate_series(${from}, ${to}) g`,
      );
    }

    /** Sequential scans of the read's tables so far (this backend's counts flushed first). */
    async function seqScans(): Promise<Record<string, number>> {
      await pool.query("SELECT pg_stat_force_next_flush()");
      const { rows } = await pool.query<{ relname: string; seq_scan: string }>(
        "SELECT relname, seq_scan::text FROM pg_stat_user_tables WHERE relname = ANY($1)",
        [TABLES],
      );
      return Object.fromEntries(rows.map((r) => [r.relname, Number(r.seq_scan)]));
    }

    const query = (subject: string, email: string | null, deviceKey: string | null): SigninSnapshotQuery => ({
      issuer: ISSUER,
      subject,
      verifiedEmail: email,
      ipFailures: { ip: "198.51.100.7", since: new Date(Date.now() - 3_600_000), cap: 30 },
      history: {
        deviceKey,
        network: "198.51.100.0/24",
        failuresSince: new Date(Date.now() - 3_600_000),
        trustedDevice: null,
      },
    });

    beforeAll(async () => {
      // One connection: the statements, the settings and the counters are all this one backend's.
      opened = await openMigratedDatabase(kind, { poolSize: 1 });
      const driver = opened.db.driver;
      if (driver.dialect !== "postgresql") throw new Error("expected PostgreSQL");
      pool = driver.pool;
      store = createPostgresHotStore(pool, {});
      await addUsers(1, SMALL);
      await pool.query(`ANALYZE ${TABLES.join(", ")}`);
      // The plan every later run keeps, made now, on the small tables' statistics.
      await pool.query("SET plan_cache_mode = force_generic_plan");
      await store.readSignin(query("new-0", "nobody@example.com", null));
      await store.readSignin(query("sub-1", null, "id:device-1"));
      await addUsers(SMALL + 1, SMALL + GROWN);
    }, 60_000);
    afterAll(async () => {
      await opened?.close();
    });

    it("the service's connections plan without sequential scans", async () => {
      const { rows } = await pool.query<{ enable_seqscan: string }>("SHOW enable_seqscan");
      expect(rows[0]!.enable_seqscan).toBe("off");
    });

    it("a new user's read, a returning user's on a new device, and an e-mail owner's: no table walked", async () => {
      const before = await seqScans();
      for (let i = 1; i <= 5; i++) {
        const fresh = await store.readSignin(query(`new-${i}`, `nobody-${i}@example.com`, `id:new-${i}`));
        expect(fresh.linked).toBeNull();
        expect(fresh.emailOwners).toEqual([]);
      }
      const owner = SMALL + GROWN - 7;
      const byEmail = await store.readSignin(query("new-by-email", `u${owner}@example.com`, null));
      expect(byEmail.linked).toBeNull();
      expect(byEmail.emailOwners.map((u) => u.id)).toEqual([`usr_${owner}`]);
      const returning = SMALL + GROWN - 3;
      const known = await store.readSignin(query(`sub-${returning}`, null, "id:a-new-device"));
      expect(known.linked?.user.id).toBe(`usr_${returning}`);
      expect(known.linked?.history?.deviceKnown).toBe(false);
      expect(known.linked?.history?.hasHistory).toBe(true); // its other device was seen
      expect(await seqScans()).toEqual(before);
    });
  },
);
