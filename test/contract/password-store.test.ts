import { describe, expect, it } from "vitest";
import { createAccountStore } from "../../src/store/account-store.ts";
import { createPasswordStore } from "../../src/store/password-store.ts";
import { createSessionStore } from "../../src/store/session-store.ts";
import type { AccountWrite } from "../../src/core/ports/signin.ts";
import { testDatabaseKinds, useMigratedDatabase } from "../support/databases.ts";
import { newUserWrite, signinWrite } from "../support/signin-writes.ts";

const client = { ip: null, userAgent: "vitest", requestId: null, deviceId: null };
const at = new Date("2026-04-01T08:00:00Z");

for (const kind of testDatabaseKinds()) {
  describe(`password store on ${kind.dialect}`, kind.suiteOptions, () => {
    const db = useMigratedDatabase(kind, { poolSize: 10 });

    /** A user with `sessions` sessions, as sign-ins leave them. */
    async function userWithSessions(sessions: number) {
      const created = newUserWrite({ email: null });
      const userId = created.user.id;
      const ids: string[] = [];
      for (let i = 0; i < sessions; i++) {
        // The first sign-in creates the user, each later one links another identity to it.
        const account: AccountWrite =
          i === 0 ? created : { kind: "link", userId, identity: newUserWrite({ email: null }).identity };
        const write = signinWrite(account, at);
        ids.push(write.session.id);
        await createAccountStore(db().client).commitSignin(write);
      }
      return { userId, sessionIds: ids };
    }

    const write = (userId: string, keep: string, hash: string, expectedHash: string | null, revoke = true) => ({
      userId,
      hash,
      expectedHash,
      at,
      revokeOtherSessions: revoke ? { keepSessionId: keep, reason: "password_changed" } : null,
      audit: { type: "password.changed", at, userId, client, detail: { first_password: expectedHash === null } },
    });

    it("loads the user, its hash and the session; sets a first password; ends the other sessions; audits", async () => {
      const store = createPasswordStore(db().client);
      const { userId, sessionIds } = await userWithSessions(3);
      await db().client.user.update({ where: { id: userId }, data: { mustChangePassword: true } });
      const before = await store.loadForChange(userId, sessionIds[0]!);
      expect(before).toMatchObject({
        hash: null,
        sessionCreatedAt: at,
        user: { id: userId, passwordChangedAt: null, mustChangePassword: true },
      });

      const outcome = await store.commitPasswordChange(write(userId, sessionIds[0]!, "$argon2id$first", null));
      expect(outcome).toMatchObject({
        kind: "changed",
        revokedSessions: 2,
        user: { mustChangePassword: false, passwordChangedAt: at },
      });
      const sessions = await db().client.session.findMany({ where: { userId }, orderBy: { id: "asc" } });
      expect(sessions.filter((s) => s.revokedAt === null).map((s) => s.id)).toEqual([sessionIds[0]]);
      expect(sessions.filter((s) => s.revokedAt !== null).every((s) => s.revokedReason === "password_changed")).toBe(
        true,
      );
      const audit = await db().client.auditEvent.findFirstOrThrow({ where: { userId, type: "password.changed" } });
      expect(JSON.parse(audit.detail!)).toEqual({ first_password: true, revoked_sessions: 2 });

      // The other stores see the credential's time in the same reads as the user.
      expect((await createSessionStore(db().client).findUser(userId))?.passwordChangedAt).toEqual(at);
      expect(await store.loadForChange(userId, sessionIds[1]!)).toMatchObject({
        hash: "$argon2id$first",
        sessionCreatedAt: null,
      });
    });

    it("lets exactly one of two concurrent changes from the same old hash win", async () => {
      const store = createPasswordStore(db().client);
      const { userId, sessionIds } = await userWithSessions(1);
      await store.commitPasswordChange(write(userId, sessionIds[0]!, "$argon2id$v1", null));
      const outcomes = await Promise.all([
        store.commitPasswordChange(write(userId, sessionIds[0]!, "$argon2id$a", "$argon2id$v1", false)),
        store.commitPasswordChange(write(userId, sessionIds[0]!, "$argon2id$b", "$argon2id$v1", false)),
      ]);
      expect(outcomes.map((o) => o.kind).sort()).toEqual(["changed", "conflict"]);
      const stored = await db().client.passwordCredential.findUniqueOrThrow({ where: { userId } });
      expect(["$argon2id$a", "$argon2id$b"]).toContain(stored.hash);
      expect(await db().client.auditEvent.count({ where: { userId, type: "password.changed" } })).toBe(2);
    });

    it("refuses a second first password", async () => {
      const store = createPasswordStore(db().client);
      const { userId, sessionIds } = await userWithSessions(1);
      const outcomes = await Promise.all([
        store.commitPasswordChange(write(userId, sessionIds[0]!, "$argon2id$x", null)),
        store.commitPasswordChange(write(userId, sessionIds[0]!, "$argon2id$y", null)),
      ]);
      expect(outcomes.map((o) => o.kind).sort()).toEqual(["changed", "conflict"]);
    });
  });
}
