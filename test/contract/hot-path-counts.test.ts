import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.ts";
import { testDatabaseKinds } from "../support/databases.ts";
import { devIdToken } from "../support/signin-e2e.ts";

/**
 * The hot path's cost in statements and (PostgreSQL) round trips, pinned so it cannot creep back
 * (sign-in at the speed of the hardware). Every statement is counted, Prisma's and the
 * driver's alike, through the app's onQuery/onRoundTrip hooks, one request at a time.
 *
 * SQLite runs the read as small statements in one synchronous turn (no round trips exist there);
 * PostgreSQL runs it as one statement, and the whole write as one more.
 */
const EXPECTED = {
  sqlite: {
    // identity, address failures, user, totp, device, networks, recent failures
    // + BEGIN, ID token used, user (status re-checked, with its password time), session, refresh
    //   token, audit, COMMIT: the identity, device and network were seen within the minute
    //   (core/last-seen.ts), so no statement touches them
    returning: { statements: 14 },
    // the address's failure count (first contact: the limit reserves the attempt before the
    // token is verified) + identity, address failures, e-mail owners + BEGIN, ID token used,
    // user, identity, session, refresh token, device, network, audit, COMMIT
    new: { statements: 14 },
    // BEGIN, spend, read, new token, session touch, audit, COMMIT
    refresh: { statements: 7 },
    // session with user status, user with password
    me: { statements: 2 },
  },
  postgresql: {
    returning: { statements: 2, roundTrips: 2 },
    // + the address's failure count, read once when an address is first seen (then every 5 s
    // at most, refreshed for free by each sign-in's read)
    new: { statements: 3, roundTrips: 3 },
    // BEGIN, spend, read, rotation (new token + session touch + audit), COMMIT
    refresh: { statements: 5, roundTrips: 5 },
    me: { statements: 2, roundTrips: 2 },
  },
} as const;

for (const kind of testDatabaseKinds()) {
  describe(`hot path statement and round-trip counts on ${kind.dialect}`, kind.suiteOptions, () => {
    let t: TestApp;
    let statements = 0;
    let roundTrips = 0;
    const seen: string[] = [];
    const json = { "content-type": "application/json" };

    beforeAll(async () => {
      t = await startTestApp({
        kind,
        // Production-like: the default per-address failure limit is on (its count is in the read).
        config: { dev: true, "rate_limit.signin_failures_per_ip": 30 },
        overrides: {
          onQuery: (sql) => {
            statements++;
            seen.push(sql);
          },
          onRoundTrip: () => void roundTrips++,
        },
      });
    });
    afterAll(async () => {
      await t?.close();
    });

    async function counted<T>(
      run: () => Promise<T>,
    ): Promise<{ result: T; statements: number; roundTrips: number; seen: string[] }> {
      statements = 0;
      roundTrips = 0;
      seen.length = 0;
      const result = await run();
      return { result, statements, roundTrips, seen: [...seen] };
    }
    /** The statements run, one short line each, for a failure's message. */
    const listed = (c: { seen: string[] }) => c.seen.map((sql) => sql.replace(/\s+/g, " ").slice(0, 80)).join("\n");
    const mint = (sub: string) => devIdToken(t.url, sub, { email: `${sub}@example.com` });
    async function call(path: string, init: RequestInit): Promise<Record<string, unknown>> {
      const r = await fetch(`${t.url}${path}`, init);
      const body = (await r.json()) as Record<string, unknown>;
      expect(r.status, JSON.stringify(body)).toBe(200);
      return body;
    }
    const signin = (token: string) =>
      call("/auth/id-token/signin", {
        method: "POST",
        headers: json,
        body: JSON.stringify({ id_token: token, provider: "dev", device_id: "device-1" }),
      });

    it("pins statements and round trips of a new user's sign-in, a returning one, a refresh and GET /auth/me", async () => {
      const expected = EXPECTED[kind.dialect];
      // Each sign-in with a token of its own (a token signs in once).
      const sub = `counts-${kind.dialect}`;
      const first = await counted(async () => signin(await mint(sub)));
      expect(first.result["requires_mfa"]).toBe(false);
      await signin(await mint(sub)); // settle: the second sign-in is the first "returning" one
      const token = await mint(sub);
      const again = await counted(() => signin(token));
      expect(again.result["requires_mfa"]).toBe(false);
      const refresh = await counted(() =>
        call("/auth/token/refresh", {
          method: "POST",
          headers: json,
          body: JSON.stringify({ refresh_token: again.result["refresh_token"] }),
        }),
      );
      const me = await counted(() =>
        call("/auth/me", { headers: { authorization: `Bearer ${String(again.result["access_token"])}` } }),
      );

      const actual = (c: { statements: number; roundTrips: number }, e: { statements: number; roundTrips?: number }) =>
        e.roundTrips === undefined
          ? { statements: c.statements }
          : { statements: c.statements, roundTrips: c.roundTrips };
      expect(actual(first, expected.new), listed(first)).toEqual(expected.new);
      expect(actual(again, expected.returning), listed(again)).toEqual(expected.returning);
      expect(actual(refresh, expected.refresh), listed(refresh)).toEqual(expected.refresh);
      expect(actual(me, expected.me), listed(me)).toEqual(expected.me);
      // What the read found fresh (core/last-seen.ts) the write leaves out: no statement on
      // SQLite, no part of the one write statement on PostgreSQL. A new user's write has them all.
      const lastSeen = /(INSERT INTO|UPDATE) (user_devices|user_networks)|UPDATE identities/;
      expect(again.seen.filter((sql) => lastSeen.test(sql))).toEqual([]);
      expect(first.seen.join("\n")).toMatch(/INSERT INTO user_devices/);
      expect(first.seen.join("\n")).toMatch(/INSERT INTO user_networks/);
    });
  });
}
