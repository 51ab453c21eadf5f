/**
 * AdminStore on both databases: what operators read (users by id, username, e-mail, newest first;
 * a user's detail; the user's audit trail) and change (status, the forced password change,
 * unlinking an identity), each change audited in the same transaction, each refusal changing nothing.
 */
import { describe, expect, it } from "vitest";
import type { AuditRecord, UserStatus } from "../../src/core/model.ts";
import { createAdminStore } from "../../src/store/admin-store.ts";
import { testDatabaseKinds, useMigratedDatabase } from "../support/databases.ts";

const client = { ip: "192.0.2.7", userAgent: "admin-store-test", requestId: null, deviceId: null };
let n = 0;
const uid = () => `${Date.now().toString(36)}${(n++).toString(36).padStart(4, "0")}`;
const at = new Date("2026-06-01T09:00:00Z");
const hours = (h: number) => new Date(at.getTime() + h * 3600_000);

/** An audit record of an operator's change; `requestId` finds exactly its row. */
function auditOf(type: string, userId: string, requestId: string): AuditRecord {
  return { type, at, userId, client: { ...client, requestId }, detail: { actor: "ops" } };
}

for (const kind of testDatabaseKinds()) {
  describe(`admin store on ${kind.dialect}`, kind.suiteOptions, () => {
    const db = useMigratedDatabase(kind);
    const store = () => createAdminStore(db().client);

    /** A user row with one identity per provider given; returns its id and its identities' ids. */
    async function storedUser(
      o: {
        createdAt?: Date;
        email?: string | null;
        emailVerified?: boolean;
        status?: UserStatus;
        providers?: string[];
        password?: Date;
      } = {},
    ) {
      const id = `usr_${uid()}`;
      const email = o.email === undefined ? `${id}@example.com` : o.email;
      const identities = (o.providers ?? ["op"]).map((provider, i) => ({
        id: `idn_${uid()}`,
        issuer: `https://${provider}.example`,
        subject: `sub-${uid()}`,
        provider,
        email,
        emailVerified: o.emailVerified ?? true,
        createdAt: hours(i),
        lastSigninAt: hours(i + 1),
      }));
      await db().client.user.create({
        data: {
          id,
          username: `u${uid()}`,
          email,
          emailNormalized: email,
          emailVerified: o.emailVerified ?? true,
          status: o.status ?? "active",
          createdAt: o.createdAt ?? at,
          identities: { create: identities },
          ...(o.password === undefined ? {} : { password: { create: { hash: "$argon2id$x", changedAt: o.password } } }),
        },
      });
      return { id, identityIds: identities.map((i) => i.id) };
    }

    async function session(
      userId: string,
      o: { provider?: string; expiresAt?: Date; revokedAt?: Date; revokedReason?: string } = {},
    ) {
      const id = `ses_${uid()}`;
      await db().client.session.create({
        data: {
          id,
          userId,
          provider: o.provider ?? "op",
          createdAt: at,
          expiresAt: o.expiresAt ?? hours(24),
          revokedAt: o.revokedAt ?? null,
          revokedReason: o.revokedReason ?? null,
        },
      });
      return id;
    }

    async function trustedDevice(userId: string) {
      await db().client.trustedDevice.create({
        data: {
          id: `tdv_${uid()}`,
          userId,
          credentialHash: `h-${uid()}`,
          createdAt: at,
          lastUsedAt: at,
          expiresAt: hours(24 * 30),
        },
      });
    }

    const sessionsOf = (userId: string) =>
      db().client.session.findMany({
        where: { userId },
        select: { id: true, revokedAt: true, revokedReason: true },
        orderBy: { id: "asc" },
      });
    const identitiesOf = async (userId: string) =>
      (await db().client.identity.findMany({ where: { userId }, orderBy: { createdAt: "asc" } })).map((i) => i.id);
    const auditRows = (requestId: string) => db().client.auditEvent.findMany({ where: { requestId } });

    it("finds a user by id and by username with the operator's fields; null for nobody", async () => {
      const { id } = await storedUser({ password: hours(-48) });
      await db().client.user.update({
        where: { id },
        data: {
          status: "locked",
          lockedUntil: hours(2),
          statusReason: "fraud review",
          mustChangePassword: true,
          lastSigninAt: hours(1),
        },
      });
      const row = await db().client.user.findUniqueOrThrow({ where: { id } });
      const expected = {
        id,
        username: row.username,
        email: `${id}@example.com`,
        emailVerified: true,
        phone: null,
        status: "locked",
        lockedUntil: hours(2),
        mustChangePassword: true,
        createdAt: at,
        passwordChangedAt: hours(-48),
        statusReason: "fraud review",
        lastSigninAt: hours(1),
      };
      expect(await store().findUserById(id)).toEqual(expected);
      expect(await store().findUserByUsername(row.username)).toEqual(expected);
      expect(await store().findUserById("usr_nobody")).toBeNull();
      expect(await store().findUserByUsername("nobody")).toBeNull();

      // No local password, never signed in: both null.
      const plain = await storedUser();
      expect(await store().findUserById(plain.id)).toMatchObject({
        passwordChangedAt: null,
        lastSigninAt: null,
        statusReason: null,
      });
    });

    it("finds every user with a normalized e-mail, verified or not, oldest first, at most 20", async () => {
      const email = `shared-${uid()}@example.com`;
      const older = await storedUser({ email, emailVerified: false, createdAt: hours(-2) });
      const newer = await storedUser({ email, createdAt: hours(-1) });
      await storedUser({ email: `other-${uid()}@example.com` });
      expect((await store().findUsersByEmail(email)).map((u) => [u.id, u.emailVerified])).toEqual([
        [older.id, false],
        [newer.id, true],
      ]);
      expect(await store().findUsersByEmail(`nobody-${uid()}@example.com`)).toEqual([]);

      const many = `many-${uid()}@example.com`;
      const ids: string[] = [];
      for (let i = 0; i < 21; i++) ids.push((await storedUser({ email: many, createdAt: hours(i) })).id);
      expect((await store().findUsersByEmail(many)).map((u) => u.id)).toEqual(ids.slice(0, 20));
    });

    it("lists users newest first (ties by id, newest id first), by status, up to the limit", async () => {
      // Created after every other user of this suite, so they are its newest.
      const future = new Date("2030-01-01T00:00:00Z");
      const a = await storedUser({ createdAt: future, status: "disabled" });
      const b = await storedUser({ createdAt: future });
      const c = await storedUser({ createdAt: new Date("2030-01-02T00:00:00Z"), status: "disabled" });
      const [first, second] = [a.id, b.id].sort().reverse();
      expect((await store().listUsers({ limit: 3 })).map((u) => u.id)).toEqual([c.id, first, second]);
      expect((await store().listUsers({ limit: 1 })).map((u) => u.id)).toEqual([c.id]);
      const disabled = await store().listUsers({ status: "disabled", limit: 2 });
      expect(disabled.map((u) => u.id)).toEqual([c.id, a.id]);
      expect(disabled.every((u) => u.status === "disabled")).toBe(true);
      expect((await store().listUsers({ status: "active", limit: 50 })).every((u) => u.status === "active")).toBe(true);
    });

    it("details a user: identities, factors oldest first; live sessions at `now`; unused recovery codes", async () => {
      const { id, identityIds } = await storedUser({ providers: ["acme", "other"] });
      await session(id); // live
      await session(id, { expiresAt: hours(48) }); // live
      await session(id, { revokedAt: at, revokedReason: "signed_out" });
      await session(id, { expiresAt: hours(1) }); // past its expiry at `now`
      const factor = (data: { id: string; type: string; confirmedAt?: Date; createdAt: Date }) =>
        db().client.mfaFactor.create({ data: { ...data, userId: id, secretEnc: `secret-${data.type}` } });
      await factor({ id: `mfa_${uid()}`, type: "webauthn", createdAt: hours(2) });
      const totp = `mfa_${uid()}`;
      await factor({ id: totp, type: "totp", confirmedAt: hours(1), createdAt: hours(1) });
      for (const usedAt of [null, null, null, hours(1)]) {
        await db().client.recoveryCode.create({ data: { id: `rc_${uid()}`, userId: id, codeHash: uid(), usedAt } });
      }
      const someoneElse = await storedUser();
      await session(someoneElse.id);

      const detail = await store().userDetail(id, hours(2));
      expect(detail?.user).toEqual(await store().findUserById(id));
      expect(detail?.identities).toEqual([
        {
          id: identityIds[0],
          issuer: "https://acme.example",
          subject: expect.any(String),
          provider: "acme",
          email: `${id}@example.com`,
          emailVerified: true,
          createdAt: hours(0),
          lastSigninAt: hours(1),
        },
        {
          id: identityIds[1],
          issuer: "https://other.example",
          subject: expect.any(String),
          provider: "other",
          email: `${id}@example.com`,
          emailVerified: true,
          createdAt: hours(1),
          lastSigninAt: hours(2),
        },
      ]);
      expect(detail?.activeSessions).toBe(2);
      // The factors' secrets stay in the database.
      expect(detail?.factors).toEqual([
        { id: totp, type: "totp", confirmedAt: hours(1), createdAt: hours(1) },
        { id: expect.any(String), type: "webauthn", confirmedAt: null, createdAt: hours(2) },
      ]);
      expect(detail?.unusedRecoveryCodes).toBe(3);
      expect((await store().userDetail(id, hours(30)))?.activeSessions).toBe(1);
      expect(await store().userDetail("usr_nobody", at)).toBeNull();
    });

    it("locks a user (until, why), revokes live sessions, forgets trusted devices, audited together", async () => {
      const { id } = await storedUser();
      const live = [await session(id), await session(id)];
      const revokedBefore = await session(id, { revokedAt: hours(-1), revokedReason: "signed_out" });
      await trustedDevice(id);
      const other = await storedUser();
      const othersSession = await session(other.id);
      await trustedDevice(other.id);
      const requestId = `req-${uid()}`;

      const result = await store().setStatus({
        userId: id,
        status: "locked",
        lockedUntil: hours(4),
        reason: "fraud review",
        at: hours(1),
        revokeSessions: "user_locked",
        audit: auditOf("admin.user_locked", id, requestId),
      });
      expect(result).toEqual({ revokedSessions: 2 });
      expect(await store().findUserById(id)).toMatchObject({
        status: "locked",
        lockedUntil: hours(4),
        statusReason: "fraud review",
      });
      expect(await sessionsOf(id)).toEqual(
        [
          ...live.map((s) => ({ id: s, revokedAt: hours(1), revokedReason: "user_locked" })),
          { id: revokedBefore, revokedAt: hours(-1), revokedReason: "signed_out" },
        ].sort((x, y) => (x.id < y.id ? -1 : 1)),
      );
      expect(await db().client.trustedDevice.count({ where: { userId: id } })).toBe(0);
      // Nobody else's sessions or devices.
      expect(await sessionsOf(other.id)).toEqual([{ id: othersSession, revokedAt: null, revokedReason: null }]);
      expect(await db().client.trustedDevice.count({ where: { userId: other.id } })).toBe(1);
      const [audit, ...more] = await auditRows(requestId);
      expect(more).toEqual([]);
      // An admin's act is no failure of the caller's address: it carries no address key.
      expect(audit).toMatchObject({ type: "admin.user_locked", userId: id, at, ip: client.ip, addressKey: null });
      expect(JSON.parse(audit!.detail!)).toEqual({ actor: "ops", revoked_sessions: 2 });
    });

    it("disabling without revoking keeps sessions, forgets trusted devices; enabling keeps everything", async () => {
      const { id } = await storedUser();
      const s = await session(id);
      await trustedDevice(id);
      const disable = `req-${uid()}`;
      expect(
        await store().setStatus({
          userId: id,
          status: "disabled",
          lockedUntil: null,
          reason: null,
          at,
          revokeSessions: null,
          audit: auditOf("admin.user_disabled", id, disable),
        }),
      ).toEqual({ revokedSessions: 0 });
      expect(await sessionsOf(id)).toEqual([{ id: s, revokedAt: null, revokedReason: null }]);
      expect(await db().client.trustedDevice.count({ where: { userId: id } })).toBe(0);
      expect(JSON.parse((await auditRows(disable))[0]!.detail!)).toEqual({ actor: "ops", revoked_sessions: 0 });

      await trustedDevice(id);
      await store().setStatus({
        userId: id,
        status: "active",
        lockedUntil: null,
        reason: null,
        at,
        revokeSessions: null,
        audit: auditOf("admin.user_enabled", id, `req-${uid()}`),
      });
      expect(await store().findUserById(id)).toMatchObject({ status: "active", lockedUntil: null, statusReason: null });
      expect(await db().client.trustedDevice.count({ where: { userId: id } })).toBe(1);
    });

    it("refuses a status change for nobody and writes no audit row", async () => {
      const requestId = `req-${uid()}`;
      const error = await store()
        .setStatus({
          userId: "usr_nobody",
          status: "disabled",
          lockedUntil: null,
          reason: null,
          at,
          revokeSessions: "user_disabled",
          audit: auditOf("admin.user_disabled", "usr_nobody", requestId),
        })
        .catch((e: unknown) => e);
      expect(error).toMatchObject({ code: "P2025" }); // Prisma's "record to update not found"
      expect(await auditRows(requestId)).toEqual([]);
    });

    it("sets and clears the forced password change, audited; for nobody: refused, no audit row", async () => {
      const { id } = await storedUser();
      const set = `req-${uid()}`;
      await store().setMustChangePassword(id, true, at, auditOf("admin.password_change_required", id, set));
      expect(await store().findUserById(id)).toMatchObject({ mustChangePassword: true });
      expect(await auditRows(set)).toEqual([
        expect.objectContaining({ type: "admin.password_change_required", userId: id }),
      ]);
      await store().setMustChangePassword(id, false, at, auditOf("admin.password_change_cleared", id, `req-${uid()}`));
      expect(await store().findUserById(id)).toMatchObject({ mustChangePassword: false });

      const refused = `req-${uid()}`;
      const error = await store()
        .setMustChangePassword("usr_nobody", true, at, auditOf("admin.password_change_required", "usr_nobody", refused))
        .catch((e: unknown) => e);
      expect(error).toMatchObject({ code: "P2025" });
      expect(await auditRows(refused)).toEqual([]);
    });

    it("unlinks an identity and revokes the live sessions of its provider only, audited together", async () => {
      const { id, identityIds } = await storedUser({ providers: ["acme", "other"] });
      const viaAcme = await session(id, { provider: "acme" });
      const revokedBefore = await session(id, { provider: "acme", revokedAt: hours(-1), revokedReason: "signed_out" });
      const viaOther = await session(id, { provider: "other" });
      const requestId = `req-${uid()}`;

      const result = await store().unlinkIdentity({
        userId: id,
        identityId: identityIds[0]!,
        allowLast: false,
        revokeSessionsOfProvider: "acme",
        at: hours(1),
        audit: auditOf("admin.identity_unlinked", id, requestId),
      });
      expect(result).toEqual({ kind: "unlinked", revokedSessions: 1 });
      expect(await identitiesOf(id)).toEqual([identityIds[1]]);
      const after = new Map((await sessionsOf(id)).map((s) => [s.id, s]));
      expect(after.get(viaAcme)).toMatchObject({ revokedAt: hours(1), revokedReason: "identity_unlinked" });
      expect(after.get(revokedBefore)).toMatchObject({ revokedAt: hours(-1), revokedReason: "signed_out" });
      expect(after.get(viaOther)).toMatchObject({ revokedAt: null, revokedReason: null });
      expect(JSON.parse((await auditRows(requestId))[0]!.detail!)).toEqual({ actor: "ops", revoked_sessions: 1 });
    });

    it("unlinks without revoking when no provider is named", async () => {
      const { id, identityIds } = await storedUser({ providers: ["acme", "other"] });
      const s = await session(id, { provider: "acme" });
      expect(
        await store().unlinkIdentity({
          userId: id,
          identityId: identityIds[0]!,
          allowLast: false,
          revokeSessionsOfProvider: null,
          at,
          audit: auditOf("admin.identity_unlinked", id, `req-${uid()}`),
        }),
      ).toEqual({ kind: "unlinked", revokedSessions: 0 });
      expect(await sessionsOf(id)).toEqual([{ id: s, revokedAt: null, revokedReason: null }]);
    });

    it("refuses the last identity unless allowed, another's or an unknown one; refusals change nothing", async () => {
      const { id, identityIds } = await storedUser({ providers: ["acme"] });
      const s = await session(id, { provider: "acme" });
      const other = await storedUser({ providers: ["acme", "other"] });
      const unlink = (userId: string, identityId: string, allowLast: boolean, requestId: string) =>
        store().unlinkIdentity({
          userId,
          identityId,
          allowLast,
          revokeSessionsOfProvider: "acme",
          at,
          audit: auditOf("admin.identity_unlinked", userId, requestId),
        });
      const refusals = [`req-${uid()}`, `req-${uid()}`, `req-${uid()}`];

      expect(await unlink(id, identityIds[0]!, false, refusals[0]!)).toEqual({ kind: "last_identity" });
      expect(await unlink(id, other.identityIds[0]!, true, refusals[1]!)).toEqual({ kind: "identity_not_found" });
      expect(await unlink(id, "idn_nobody", true, refusals[2]!)).toEqual({ kind: "identity_not_found" });
      expect(await identitiesOf(id)).toEqual(identityIds);
      expect(await db().client.identity.count({ where: { userId: other.id } })).toBe(2);
      expect(await sessionsOf(id)).toEqual([{ id: s, revokedAt: null, revokedReason: null }]);
      for (const requestId of refusals) expect(await auditRows(requestId)).toEqual([]);

      // Allowed: the user is left without an identity.
      expect(await unlink(id, identityIds[0]!, true, `req-${uid()}`)).toEqual({ kind: "unlinked", revokedSessions: 1 });
      expect(await db().client.identity.count({ where: { userId: id } })).toBe(0);
    });

    it("lists a user's audit trail newest first (ties by id), up to the limit, with its detail parsed", async () => {
      const { id } = await storedUser();
      const row = (suffix: string, when: Date, detail: string | null) => ({
        id: `evt_${uid()}_${suffix}`,
        at: when,
        type: `t.${suffix}`,
        userId: id,
        detail,
      });
      const rows = [
        row("object", hours(1), JSON.stringify({ revoked_sessions: 2 })),
        row("array", hours(2), "[1,2]"),
        row("garbled", hours(3), "{not json"),
        row("none", hours(3), null),
        row("oldest", hours(0), null),
      ];
      await db().client.auditEvent.createMany({
        data: rows.map((r, i) =>
          i === 0
            ? {
                ...r,
                code: "c",
                provider: "acme",
                issuer: "https://acme.example",
                subject: "s",
                ip: "192.0.2.9",
                userAgent: "ua",
                requestId: "r1",
              }
            : r,
        ),
      });
      await db().client.auditEvent.create({
        data: { id: `evt_${uid()}`, at: hours(9), type: "someone.else", userId: `usr_${uid()}` },
      });

      const [sameTimeFirst, sameTimeSecond] = [rows[2]!, rows[3]!].sort((x, y) => (x.id < y.id ? 1 : -1));
      const entries = await store().listAudit(id, 10);
      expect(entries.map((e) => e.id)).toEqual([
        sameTimeFirst!.id,
        sameTimeSecond!.id,
        rows[1]!.id,
        rows[0]!.id,
        rows[4]!.id,
      ]);
      for (const e of entries) expect(e).not.toHaveProperty("userId");
      const byType = new Map(entries.map((e) => [e.type, e]));
      expect(byType.get("t.object")).toMatchObject({
        at: hours(1),
        code: "c",
        provider: "acme",
        issuer: "https://acme.example",
        subject: "s",
        ip: "192.0.2.9",
        userAgent: "ua",
        requestId: "r1",
        detail: { revoked_sessions: 2 },
      });
      expect(byType.get("t.array")).toMatchObject({ code: null, provider: null, ip: null, detail: { value: [1, 2] } });
      expect(byType.get("t.garbled")?.detail).toEqual({ raw: "{not json" });
      expect(byType.get("t.none")?.detail).toBeNull();

      expect((await store().listAudit(id, 2)).map((e) => e.id)).toEqual([sameTimeFirst!.id, sameTimeSecond!.id]);
      expect(await store().listAudit(`usr_${uid()}`, 10)).toEqual([]);
    });
  });
}
