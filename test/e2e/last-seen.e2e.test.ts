/**
 * Last-seen times are written only when stale (src/core/last-seen.ts): a
 * user signing in again within a minute gets a new session, refresh token and audit row, and no
 * write to the user, identity, device or network rows; after a minute each is written again; a
 * new device or network, or a network GeoIP now places elsewhere, is written at once. Both
 * databases, through the real server and a clock the test moves.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LAST_SEEN_RESOLUTION_MS } from "../../src/core/last-seen.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { testDatabaseKinds } from "../support/databases.ts";
import { buildMmdb, cityRecord } from "../support/mmdb-writer.ts";
import { createMovableClock, devIdToken, uniqueSub } from "../support/signin-e2e.ts";

const geoDir = mkdtempSync(join(tmpdir(), "last-seen-geo-"));
const GEOIP_DB = join(geoDir, "city.mmdb");
// Two halves of one /24 (one network for the risk history), placed a kilometre apart.
writeFileSync(
  GEOIP_DB,
  buildMmdb([
    { network: "203.0.113.0/25", data: cityRecord("DE", 52.52, 13.405) },
    { network: "203.0.113.128/25", data: cityRecord("DE", 52.53, 13.41) },
  ]),
);
afterAll(() => rmSync(geoDir, { recursive: true, force: true }));

for (const kind of testDatabaseKinds()) {
  describe(`last-seen times on ${kind.dialect}`, kind.suiteOptions, () => {
    let t: TestApp;
    const clock = createMovableClock();

    beforeAll(async () => {
      t = await startTestApp({
        kind,
        config: { dev: true, "server.trusted_proxies": ["127.0.0.1"], "risk.geoip_db": GEOIP_DB },
        overrides: { clock },
      });
    });
    afterAll(async () => {
      await t?.close();
    });

    async function signin(sub: string, ip: string, device: string, token?: string): Promise<string> {
      const id_token = token ?? (await devIdToken(t.url, sub));
      const res = await fetch(`${t.url}/auth/id-token/signin`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-forwarded-for": ip, "x-device-id": device },
        body: JSON.stringify({ id_token, provider: "dev" }),
      });
      const body = (await res.json()) as { user_id?: string; requires_mfa?: boolean };
      expect(res.status, JSON.stringify(body)).toBe(200);
      expect(body.requires_mfa).toBe(false);
      return body.user_id!;
    }

    async function rowsOf(userId: string) {
      const db = t.app.database.client;
      const [user, identities, devices, networks, sessions, audit] = await Promise.all([
        db.user.findUniqueOrThrow({ where: { id: userId } }),
        db.identity.findMany({ where: { userId } }),
        db.userDevice.findMany({ where: { userId }, orderBy: { firstSeenAt: "asc" } }),
        db.userNetwork.findMany({ where: { userId }, orderBy: { firstSeenAt: "asc" } }),
        db.session.count({ where: { userId } }),
        db.auditEvent.count({ where: { userId, type: "signin.succeeded" } }),
      ]);
      return {
        lastSignin: user.lastSigninAt?.getTime(),
        updated: user.updatedAt.getTime(),
        identitySignin: identities.map((i) => i.lastSigninAt?.getTime()),
        devices: devices.map((d) => ({ first: d.firstSeenAt.getTime(), last: d.lastSeenAt.getTime() })),
        networks: networks.map((n) => ({ network: n.network, last: n.lastSeenAt.getTime(), latitude: n.latitude })),
        sessions,
        audit,
      };
    }

    it("writes none of them again within the resolution, every one of them after it; sessions and audit rows every time", async () => {
      const sub = uniqueSub("last-seen");
      const t0 = clock.now().getTime();
      const userId = await signin(sub, "203.0.113.10", "laptop");
      const first = await rowsOf(userId);
      expect(first.lastSignin).toBeGreaterThanOrEqual(t0);
      expect(first.identitySignin).toEqual([first.lastSignin]);
      expect(first.devices).toHaveLength(1);
      expect(first.networks).toHaveLength(1);

      clock.advance(LAST_SEEN_RESOLUTION_MS / 2);
      await signin(sub, "203.0.113.10", "laptop");
      const within = await rowsOf(userId);
      expect(within).toEqual({ ...first, sessions: 2, audit: 2 });

      clock.advance(LAST_SEEN_RESOLUTION_MS / 2 + 1_000);
      const t2 = clock.now().getTime();
      await signin(sub, "203.0.113.10", "laptop");
      const after = await rowsOf(userId);
      expect(after.sessions).toBe(3);
      expect(after.audit).toBe(3);
      expect(after.lastSignin).toBeGreaterThanOrEqual(t2);
      expect(after.updated).toBe(after.lastSignin);
      expect(after.identitySignin).toEqual([after.lastSignin]);
      expect(after.devices).toEqual([{ first: first.devices[0]!.first, last: after.lastSignin }]);
      expect(after.networks).toEqual([{ ...first.networks[0]!, last: after.lastSignin }]);
    });

    it("many sign-ins of one user at once, its marks stale, all succeed and one of them writes them", async () => {
      const sub = uniqueSub("last-seen-burst");
      const userId = await signin(sub, "203.0.113.10", "laptop");
      let sessions = 1;
      // Every sign-in of a burst reads the marks as stale; on PostgreSQL a share lock taken first
      // and upgraded to write the mark deadlocked such bursts (one aborted, answered 503).
      for (let burst = 0; burst < 5; burst++) {
        clock.advance(LAST_SEEN_RESOLUTION_MS + 1_000);
        const stale = clock.now().getTime();
        const tokens = await Promise.all(Array.from({ length: 32 }, () => devIdToken(t.url, sub)));
        const ids = await Promise.all(tokens.map((token) => signin(sub, "203.0.113.10", "laptop", token)));
        expect(new Set(ids)).toEqual(new Set([userId]));
        sessions += tokens.length;
        const after = await rowsOf(userId);
        expect(after.sessions).toBe(sessions);
        expect(after.lastSignin).toBeGreaterThanOrEqual(stale);
        expect(after.devices[0]!.last).toBeGreaterThanOrEqual(stale);
      }
    });

    it("writes a new device at once, and a known network GeoIP now places elsewhere, within the resolution", async () => {
      const sub = uniqueSub("last-seen-new");
      const userId = await signin(sub, "203.0.113.10", "laptop");
      const first = await rowsOf(userId);
      expect(first.networks[0]!.latitude).toBeCloseTo(52.52);

      clock.advance(1_000);
      const t1 = clock.now().getTime();
      await signin(sub, "203.0.113.200", "phone");
      const next = await rowsOf(userId);
      // The user and identity were signed in a second ago: not written again.
      expect(next.lastSignin).toBe(first.lastSignin);
      expect(next.identitySignin).toEqual(first.identitySignin);
      expect(next.devices).toHaveLength(2);
      expect(next.devices[0]).toEqual(first.devices[0]);
      expect(next.devices[1]!.first).toBeGreaterThanOrEqual(t1);
      // One network (a /24), its place moved: written at once, with its new sighting.
      expect(next.networks).toHaveLength(1);
      expect(next.networks[0]!.latitude).toBeCloseTo(52.53);
      expect(next.networks[0]!.last).toBeGreaterThanOrEqual(t1);
    });
  });
}
