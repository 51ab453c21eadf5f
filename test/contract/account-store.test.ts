import { describe, expect, it } from "vitest";
import { type AccountWrite, SigninConflict } from "../../src/core/ports/signin.ts";
import { createAccountStore, createAuditLog } from "../../src/store/account-store.ts";
import { createHotStore } from "../../src/store/hot/hot-store.ts";
import { createPrismaSigninReader } from "../../src/store/hot/prisma.ts";
import type { Database } from "../../src/store/database.ts";
import { testDatabaseKinds, useMigratedDatabase } from "../support/databases.ts";
import { newUserWrite, signinClient, signinWrite, unique } from "../support/signin-writes.ts";

const client = signinClient;

/**
 * The sign-in's store ports, as each implementation provides them: Prisma Client throughout
 * (`database.hot_path: prisma`), or the driver's prepared statements for the hot path (the
 * default; e-mail and identity lookups and audit records stay on Prisma).
 */
const IMPLEMENTATIONS = {
  prisma: (db: Database) => ({
    ...createAccountStore(db.client),
    ...createAuditLog(db.client),
    ...createPrismaSigninReader(db.client, db.dialect),
  }),
  driver: (db: Database) => {
    const hot = createHotStore(db);
    return { ...createAccountStore(db.client), ...createAuditLog(db.client), ...hot };
  },
};

for (const kind of testDatabaseKinds())
  for (const [impl, storeOf] of Object.entries(IMPLEMENTATIONS)) {
    describe(`account store on ${kind.dialect} (${impl})`, kind.suiteOptions, () => {
      const db = useMigratedDatabase(kind);

      const counts = async () => ({
        users: await db().client.user.count(),
        identities: await db().client.identity.count(),
        sessions: await db().client.session.count(),
        refreshTokens: await db().client.refreshToken.count(),
        audit: await db().client.auditEvent.count(),
      });

      it("creates a user with its identity, session, refresh token and audit in one commit", async () => {
        const store = storeOf(db());
        const write = newUserWrite();
        const user = await store.commitSignin(signinWrite(write));
        expect(user).toMatchObject({
          id: write.user.id,
          username: write.user.username,
          status: "active",
          emailVerified: true,
        });
        expect(user.createdAt.toISOString()).toBe("2026-01-15T10:30:00.000Z");
        const found = await store.findByIdentity("https://op.example", write.identity.subject);
        expect(found?.user.id).toBe(write.user.id);
        expect(found?.identityId).toBe(write.identity.id);
        expect(await store.findByIdentity("https://other.example", write.identity.subject)).toBeNull();
      });

      it("reports a lost identity race as SigninConflict(identity) and writes nothing of the loser", async () => {
        const store = storeOf(db());
        const first = newUserWrite();
        await store.commitSignin(signinWrite(first));
        const before = await counts();
        const second = newUserWrite({ subject: first.identity.subject });
        const err = await store.commitSignin(signinWrite(second)).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(SigninConflict);
        expect((err as SigninConflict).target).toBe("identity");
        expect(await counts()).toEqual(before);
      });

      it("sign-ins written at once (one group commit on SQLite): the ones that lose a race fail alone, nothing of theirs is kept", async () => {
        const store = storeOf(db());
        const existing = newUserWrite();
        await store.commitSignin(signinWrite(existing));
        const before = await counts();
        // Issued in the same turn: a winner, a loser to an existing identity, a winner, and a loser
        // to the first winner of this very batch.
        const first = newUserWrite();
        const writes = [
          first,
          newUserWrite({ subject: existing.identity.subject }),
          newUserWrite(),
          newUserWrite({ subject: first.identity.subject }),
        ];
        const outcomes = await Promise.allSettled(writes.map((w) => store.commitSignin(signinWrite(w))));
        expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "rejected", "fulfilled", "rejected"]);
        for (const i of [1, 3]) {
          const reason = (outcomes[i] as PromiseRejectedResult).reason as unknown;
          expect(reason).toBeInstanceOf(SigninConflict);
          expect((reason as SigninConflict).target).toBe("identity");
        }
        expect(await counts()).toEqual({
          users: before.users + 2,
          identities: before.identities + 2,
          sessions: before.sessions + 2,
          refreshTokens: before.refreshTokens + 2,
          audit: before.audit + 2,
        });
        for (const i of [0, 2]) expect(await db().client.user.count({ where: { id: writes[i]!.user.id } })).toBe(1);
      });

      it("reports a taken username as SigninConflict(username) and rolls everything back", async () => {
        const store = storeOf(db());
        const first = newUserWrite();
        await store.commitSignin(signinWrite(first));
        const before = await counts();
        const err = await store
          .commitSignin(signinWrite(newUserWrite({ username: first.user.username })))
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(SigninConflict);
        expect((err as SigninConflict).target).toBe("username");
        expect(await counts()).toEqual(before);
      });

      it("links a new identity to an existing user and finds users by verified e-mail", async () => {
        const store = storeOf(db());
        const first = newUserWrite();
        await store.commitSignin(signinWrite(first));
        const owners = await store.findByVerifiedEmail(first.user.emailNormalized!);
        expect(owners.map((u) => u.id)).toEqual([first.user.id]);
        const link: AccountWrite = {
          kind: "link",
          userId: first.user.id,
          identity: {
            id: `idn_${unique()}`,
            issuer: "https://second.example",
            subject: "s2",
            provider: "second",
            email: null,
            emailVerified: false,
          },
        };
        const user = await store.commitSignin(signinWrite(link));
        expect(user.id).toBe(first.user.id);
        expect((await store.findByIdentity("https://second.example", "s2"))?.user.id).toBe(first.user.id);
        expect(await db().client.identity.count({ where: { userId: first.user.id } })).toBe(2);
      });

      it("does not find unverified e-mail addresses", async () => {
        const store = storeOf(db());
        const w = newUserWrite();
        w.user.emailVerified = false;
        await store.commitSignin(signinWrite(w));
        expect(await store.findByVerifiedEmail(w.user.emailNormalized!)).toEqual([]);
      });

      it("touches an existing link on a returning sign-in", async () => {
        const store = storeOf(db());
        const w = newUserWrite();
        await store.commitSignin(signinWrite(w));
        const later = signinWrite({ kind: "existing", userId: w.user.id, identityId: w.identity.id });
        later.at = new Date("2026-03-01T00:00:00Z");
        await store.commitSignin(later);
        const identity = await db().client.identity.findUniqueOrThrow({ where: { id: w.identity.id } });
        expect(identity.lastSigninAt.toISOString()).toBe("2026-03-01T00:00:00.000Z");
        expect(await db().client.session.count({ where: { userId: w.user.id } })).toBe(2);
      });

      it("records audit events with their client detail", async () => {
        const audit = storeOf(db());
        await audit.record({
          type: "signin.failed",
          at: new Date(),
          code: "id_token_expired",
          client,
          detail: { n: 1 },
        });
        const row = await db().client.auditEvent.findFirstOrThrow({ where: { code: "id_token_expired" } });
        expect(row).toMatchObject({
          type: "signin.failed",
          ip: "192.0.2.1",
          userAgent: "vitest",
          requestId: "req-1",
          detail: '{"n":1}',
        });
      });

      it("counts recent failed sign-ins per address, without the limit's own refusals, up to a cap", async () => {
        const audit = storeOf(db());
        const ip = "198.51.100.77";
        const at = (s: string) => new Date(`2026-04-01T00:${s}Z`);
        const failed = (t: string, code: string, from = ip) =>
          audit.record({ type: "signin.failed", at: at(t), code, client: { ...client, ip: from } });
        await failed("00:00", "id_token_expired");
        await failed("05:00", "id_token_expired");
        await failed("06:00", "rate_limited");
        await failed("07:00", "id_token_signature_invalid");
        await failed("07:30", "id_token_expired", "198.51.100.78");
        await audit.record({ type: "signin.succeeded", at: at("08:00"), client: { ...client, ip } });
        expect(await audit.failuresFromIp(ip, at("01:00"), 10)).toBe(2);
        expect(await audit.failuresFromIp(ip, at("00:00"), 10)).toBe(3);
        expect(await audit.failuresFromIp(ip, at("00:00"), 2)).toBe(2);
        expect(await audit.failuresFromIp("203.0.113.1", at("00:00"), 10)).toBe(0);
      });

      it("counts failures by the address's key (an IPv6 /64), keeping each row's own address", async () => {
        const audit = storeOf(db());
        const key = "2001:db8:77:1:0:0:0:0/64";
        const at = new Date("2026-04-02T00:00:00Z");
        for (const ip of ["2001:db8:77:1::1", "2001:db8:77:1::2", "2001:db8:77:1:ffff::3"]) {
          await audit.record({
            type: "signin.failed",
            at,
            code: "id_token_expired",
            client: { ...client, ip, addressKey: key },
          });
        }
        expect(await audit.failuresFromIp(key, new Date(at.getTime() - 1000), 10)).toBe(3);
        expect(await audit.failuresFromIp("2001:db8:77:1::1", new Date(at.getTime() - 1000), 10)).toBe(0);
        const rows = await db().client.auditEvent.findMany({ where: { addressKey: key }, select: { ip: true } });
        expect(rows.map((r) => r.ip).sort()).toEqual(
          ["2001:db8:77:1::1", "2001:db8:77:1::2", "2001:db8:77:1:ffff::3"].sort(),
        );
      });

      const since = new Date("2026-01-01T00:00:00Z");
      const snapshotQuery = (
        w: ReturnType<typeof newUserWrite>,
        over: { deviceKey?: string; network?: string; subject?: string; trustedDevice?: string } = {},
      ) => ({
        issuer: "https://op.example",
        subject: over.subject ?? w.identity.subject,
        verifiedEmail: w.user.emailNormalized,
        ipFailures: { ip: "203.0.113.250", since, cap: 30 },
        history: {
          deviceKey: over.deviceKey ?? "id:dev-a",
          network: over.network ?? "192.0.2.0/24",
          failuresSince: since,
          trustedDevice: over.trustedDevice ?? null,
        },
      });

      it("reads the user's most recent networks: the newest placed one is the last location; past the 200 most recent an older one counts as new", async () => {
        const store = storeOf(db());
        const minute = (i: number) => new Date(Date.UTC(2026, 1, 1) + i * 60_000);
        const net = (i: number) => `10.${i >> 8}.${i & 255}.0/24`;
        /** `count` networks of a new user, network i last seen at minute i; the newest two placed. */
        async function userWithNetworks(count: number) {
          const w = newUserWrite();
          await store.commitSignin(signinWrite(w));
          const rows = Array.from({ length: count }, (_, i) => ({
            userId: w.user.id,
            network: net(i),
            country: i === count - 1 ? "FR" : i === count - 2 ? "DE" : null,
            latitude: i >= count - 2 ? 40 + i : null,
            longitude: i >= count - 2 ? 2 : null,
            firstSeenAt: minute(i),
            lastSeenAt: minute(i),
          }));
          // Stored in neither time order: the order read comes from the times.
          await db().client.userNetwork.createMany({
            data: [...rows.filter((_, i) => i % 2), ...rows.filter((_, i) => !(i % 2))],
          });
          return w;
        }
        for (const count of [3, 201]) {
          const w = await userWithNetworks(count);
          const newest = await store.readSignin(snapshotQuery(w, { network: net(count - 1) }));
          expect(newest.linked?.history).toMatchObject({
            networkKnown: true,
            countries: ["FR", "DE"],
            lastLocation: { latitude: 40 + count - 1, longitude: 2, at: minute(count - 1) },
          });
          const second = await store.readSignin(snapshotQuery(w, { network: net(1) }));
          expect(second.linked?.history?.networkKnown).toBe(true);
          const oldest = await store.readSignin(snapshotQuery(w, { network: net(0) }));
          expect(oldest.linked?.history?.networkKnown).toBe(count <= 200);
        }
      });

      it("finds a presented device credential in the same read, for its own user only, and records its use in the write", async () => {
        const store = storeOf(db());
        const owner = newUserWrite();
        const other = newUserWrite();
        await store.commitSignin(signinWrite(owner));
        await store.commitSignin(signinWrite(other));
        const hash = `tdc-hash-${unique()}`;
        const expiresAt = new Date("2026-03-01T00:00:00Z");
        const created = new Date("2026-01-20T00:00:00Z");
        await db().client.trustedDevice.create({
          data: {
            id: `tdv_${unique()}`,
            userId: owner.user.id,
            credentialHash: hash,
            label: "firefox/linux",
            createdAt: created,
            lastUsedAt: created,
            expiresAt,
          },
        });
        const mine = await store.readSignin(snapshotQuery(owner, { trustedDevice: hash }));
        expect(mine.linked?.history?.trustedDevice).toEqual({ id: expect.stringMatching(/^tdv_/), expiresAt });
        // Another user presenting the same credential finds nothing; nor does a read without one.
        expect(
          (await store.readSignin(snapshotQuery(other, { trustedDevice: hash }))).linked?.history?.trustedDevice,
        ).toBeNull();
        expect((await store.readSignin(snapshotQuery(owner))).linked?.history?.trustedDevice).toBeNull();
        expect(
          (await store.readSignin(snapshotQuery(owner, { trustedDevice: "unknown" }))).linked?.history?.trustedDevice,
        ).toBeNull();

        const id = mine.linked!.history!.trustedDevice!.id;
        const at = new Date("2026-02-10T00:00:00Z");
        await store.commitSignin({
          ...signinWrite({ kind: "existing", userId: owner.user.id, identityId: owner.identity.id }, at),
          seen: { deviceKey: null, network: null, geo: null, trustedDeviceId: id },
        });
        expect(await db().client.trustedDevice.findUniqueOrThrow({ where: { id } })).toMatchObject({
          lastUsedAt: at,
          createdAt: created,
        });
      });

      it("reads a returning sign-in at once: link, user with password time, risk history, address failures", async () => {
        const store = storeOf(db());
        const w = newUserWrite();
        await store.commitSignin({
          ...signinWrite(w),
          seen: {
            deviceKey: "id:dev-a",
            network: "192.0.2.0/24",
            geo: { country: "DE", latitude: 52.5, longitude: 13.4 },
          },
        });
        const snap = await store.readSignin(snapshotQuery(w));
        expect(snap.linked?.identityId).toBe(w.identity.id);
        expect(snap.linked?.identityLastSigninAt).toEqual(new Date("2026-02-01T00:00:00Z"));
        expect(snap.linked?.user).toMatchObject({
          id: w.user.id,
          username: w.user.username,
          status: "active",
          lockedUntil: null,
          passwordChangedAt: null,
        });
        expect(snap.linked?.user.createdAt.toISOString()).toBe("2026-01-15T10:30:00.000Z");
        expect(snap.linked?.history).toEqual({
          lastSigninAt: new Date("2026-02-01T00:00:00Z"),
          deviceKnown: true,
          deviceSeenAt: new Date("2026-02-01T00:00:00Z"),
          trustedDevice: null,
          hasHistory: true,
          networkKnown: true,
          networkSeen: { at: new Date("2026-02-01T00:00:00Z"), country: "DE", latitude: 52.5, longitude: 13.4 },
          countries: ["DE"],
          lastLocation: { latitude: 52.5, longitude: 13.4, at: new Date("2026-02-01T00:00:00Z") },
          recentFailures: 0,
          methods: [],
        });
        expect(snap.emailOwners).toEqual([]);
        expect(snap.ipFailures).toBe(0);
        const elsewhere = await store.readSignin(
          snapshotQuery(w, { deviceKey: "id:other", network: "198.51.100.0/24" }),
        );
        expect(elsewhere.linked?.history).toMatchObject({
          deviceKnown: false,
          deviceSeenAt: null,
          hasHistory: true,
          networkKnown: false,
          networkSeen: null,
          countries: ["DE"],
        });
        const noHistory = await store.readSignin({ ...snapshotQuery(w), history: null });
        expect(noHistory.linked?.history).toBeNull();
      });

      it("counts the user's recent failures of every kind and nothing else: only failures carry the counted user", async () => {
        const store = storeOf(db());
        const w = newUserWrite();
        const other = newUserWrite();
        await store.commitSignin(signinWrite(w));
        await store.commitSignin(signinWrite(other));
        const at = (m: number) => new Date(since.getTime() + m * 60_000);
        const record = (type: string, userId: string, minute: number, code?: string) =>
          store.record({ type, at: at(minute), userId, client, ...(code === undefined ? {} : { code }) });
        for (const [i, type] of [
          "signin.failed",
          "mfa.verify_failed",
          "mfa.challenge_exhausted",
          "mfa.code_failed",
        ].entries())
          await record(type, w.user.id, 10 + i, "mfa_code_invalid");
        await record("signin.failed", w.user.id, -5); // before the window
        await record("signin.failed", other.user.id, 20); // someone else's
        await record("password.change_failed", w.user.id, 21, "password_incorrect"); // a budget's, not risk's
        await record("signin.succeeded", w.user.id, 22);
        await record("mfa.step_up", w.user.id, 23);
        const snap = await store.readSignin(snapshotQuery(w));
        expect(snap.linked?.history?.recentFailures).toBe(4);

        // Failures a per-user count reads carry the user; every other row (the sign-in's own
        // write included) leaves the counted index alone.
        const rows = await db().client.auditEvent.findMany({
          where: { userId: w.user.id },
          select: { type: true, countedUserId: true },
        });
        const counted = rows.filter((r) => r.countedUserId !== null);
        expect(counted.every((r) => r.countedUserId === w.user.id)).toBe(true);
        expect(counted.map((r) => r.type).sort()).toEqual(
          [
            "mfa.challenge_exhausted",
            "mfa.code_failed",
            "mfa.verify_failed",
            "password.change_failed",
            "signin.failed",
            "signin.failed",
          ].sort(),
        );
        expect(
          rows
            .filter((r) => r.countedUserId === null)
            .map((r) => r.type)
            .sort(),
        ).toEqual(["mfa.step_up", "signin.succeeded", "signin.succeeded"].sort());
      });

      it("reads a new identity's verified e-mail owners and the address's failures, up to the cap", async () => {
        const store = storeOf(db());
        const w = newUserWrite();
        await store.commitSignin(signinWrite(w));
        const ip = "192.0.2.100"; // each suite has a database of its own
        for (const code of ["id_token_expired", "id_token_expired", "rate_limited", "id_token_signature_invalid"]) {
          await store.record({
            type: "signin.failed",
            at: new Date("2026-02-02T00:00:00Z"),
            code,
            client: { ...client, ip },
          });
        }
        const q = { ...snapshotQuery(w, { subject: `new-${unique()}` }), ipFailures: { ip, since, cap: 30 } };
        const snap = await store.readSignin(q);
        expect(snap.linked).toBeNull();
        expect(snap.emailOwners.map((u) => [u.id, u.passwordChangedAt])).toEqual([[w.user.id, null]]);
        expect(snap.ipFailures).toBe(3);
        expect((await store.readSignin({ ...q, ipFailures: { ip, since, cap: 2 } })).ipFailures).toBe(2);
        expect((await store.readSignin({ ...q, verifiedEmail: null })).emailOwners).toEqual([]);
      });

      it("re-checks the user's status inside the write: disabled or locked since the read, nothing is written", async () => {
        const store = storeOf(db());
        const w = newUserWrite();
        await store.commitSignin(signinWrite(w));
        const again = () => signinWrite({ kind: "existing", userId: w.user.id, identityId: w.identity.id });
        await db().client.user.update({ where: { id: w.user.id }, data: { status: "disabled" } });
        let before = await counts();
        let err = await store.commitSignin(again()).catch((e: unknown) => e);
        expect((err as SigninConflict).target).toBe("status");
        expect(await counts()).toEqual(before);
        // A lock still running refuses; one that ended (before the sign-in's time) does not.
        await db().client.user.update({
          where: { id: w.user.id },
          data: { status: "locked", lockedUntil: new Date("2026-02-01T00:00:01Z") },
        });
        before = await counts();
        err = await store.commitSignin(again()).catch((e: unknown) => e);
        expect((err as SigninConflict).target).toBe("status");
        expect(await counts()).toEqual(before);
        await db().client.user.update({
          where: { id: w.user.id },
          data: { lockedUntil: new Date("2026-01-31T23:59:59Z") },
        });
        const user = await store.commitSignin(again());
        expect(user).toMatchObject({ id: w.user.id, status: "locked" });
        expect((await counts()).sessions).toBe(before.sessions + 1);
      });
    });
  }
