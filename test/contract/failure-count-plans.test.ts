/**
 * The failure counts every sign-in reads (the address's failures for the per-address limit, the
 * user's recent failures for risk) cost a few index pages however many successful sign-ins the
 * address or user has: the user's are a seek per failure type, the address's one seek on the key
 * only counted failures carry. With `type IN (…)` a generic plan made on small statistics filtered
 * the type and walked every audit row of the address or user in the window, so the read got slower
 * with every sign-in (measured 5–80 ms per read under load).
 * PostgreSQL, with generic plans forced as prepared statements get them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { countedAddressKey } from "../../src/core/address-limit.ts";
import { ipFailuresSql, signinReadSql } from "../../src/store/hot/sql.ts";
import { countedUserId } from "../../src/store/user-failures.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { postgresKind } from "../support/databases.ts";

const kind = postgresKind();
const ADDRESS = "198.51.100.7";
const SUCCESSES = 6000;
const COUNTED = 4;
const OUTAGES = 2;

describe("failure counts on postgresql read a few pages, whatever the successes", kind.suiteOptions, () => {
  let t: TestApp;
  let client: pg.Client;
  let userId: string;

  beforeAll(async () => {
    t = await startTestApp({ kind });
    client = new pg.Client({ connectionString: t.database.url });
    await client.connect();
    userId = "usr_plan";
    await client.query(
      `INSERT INTO users (id, username, status, must_change_password, created_at, updated_at) VALUES ($1, 'plan', 'active', false, now(), now())`,
      [userId],
    );
    await client.query(
      `INSERT INTO identities (id, user_id, issuer, subject, provider, created_at) VALUES ('idn_plan', $1, 'https://op.test', 'plan', 'dev', now())`,
      [userId],
    );
    // A busy address and a busy user: many successful sign-ins in the window, and a few failures:
    // counted ones, and upstream outages (the user's count has them, the address's does not). Each
    // row carries the address key and the counted user the writer gives it.
    const rows = (type: string, code: string | null, n: number, from: number) =>
      client.query(
        `INSERT INTO audit_events (id, at, type, code, user_id, ip, address_key, counted_user_id, request_id)
         SELECT 'evt_' || g, now() - (g || ' milliseconds')::interval, $3, $4, $1, $2, $5, $6, 'r' || g
         FROM generate_series(${from}, ${from + n - 1}) g`,
        [userId, ADDRESS, type, code, keyOf(type, code), countedUserId({ type, userId })],
      );
    const keyOf = (type: string, code: string | null) =>
      countedAddressKey({
        type,
        code: code ?? undefined,
        client: { ip: ADDRESS, userAgent: null, requestId: null, deviceId: null },
      });
    await rows("signin.succeeded", null, SUCCESSES, 1);
    await rows("signin.failed", "id_token_expired", COUNTED, SUCCESSES + 1);
    await rows("signin.failed", "provider_unavailable", OUTAGES, SUCCESSES + COUNTED + 1);
    await client.query("SET plan_cache_mode = force_generic_plan");
  });
  afterAll(async () => {
    await client?.end();
    await t?.close();
  });

  /** Shared buffers (hit + read) the statement's generic plan touches, and its result row. */
  async function pagesOf(
    name: string,
    sql: string,
    params: unknown[],
  ): Promise<{ pages: number; row: Record<string, unknown> }> {
    await client.query(`PREPARE ${name} AS ${sql}`);
    const literals = params
      .map((p) => (p === null ? "NULL" : typeof p === "number" ? String(p) : `'${String(p)}'`))
      .join(", ");
    const explain = await client.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE ${name}(${literals})`);
    const plan = (
      explain.rows[0] as { "QUERY PLAN": [{ Plan: { "Shared Hit Blocks": number; "Shared Read Blocks": number } }] }
    )["QUERY PLAN"][0].Plan;
    const result = await client.query(`EXECUTE ${name}(${literals})`);
    return {
      pages: plan["Shared Hit Blocks"] + plan["Shared Read Blocks"],
      row: result.rows[0] as Record<string, unknown>,
    };
  }

  it("the address's counted failures, in a few pages", async () => {
    const since = new Date(Date.now() - 3_600_000).toISOString();
    const { pages, row } = await pagesOf("ip_failures", ipFailuresSql("postgresql"), [ADDRESS, since, 30]);
    expect(row["n"]).toBe(COUNTED);
    expect(pages).toBeLessThan(20);
  });

  it("the sign-in read (the user's recent failures and the address's), in a few pages", async () => {
    const since = new Date(Date.now() - 3_600_000).toISOString();
    const { pages, row } = await pagesOf("signin_read", signinReadSql("postgresql"), [
      "https://op.test",
      "plan",
      null,
      since,
      ADDRESS,
      since,
      30,
      null,
      null,
    ]);
    expect(row["identity_id"]).toBe("idn_plan");
    expect(row["recent_failures"]).toBe(COUNTED + OUTAGES);
    expect(row["ip_failures"]).toBe(COUNTED);
    expect(pages).toBeLessThan(60);
  });
});
