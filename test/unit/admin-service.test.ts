/**
 * The admin service's decisions over an in-memory store and a fixed clock: how users are named,
 * which status changes are refused, what each change writes and audits. (Against real databases,
 * through the CLI: test/e2e/admin-cli.e2e.test.ts.)
 */
import { describe, expect, it } from "vitest";
import { createAdminService } from "../../src/core/admin.ts";
import { DomainError } from "../../src/core/errors.ts";
import type { AuditRecord, IdentityRecord } from "../../src/core/model.ts";
import type { AdminStore, AdminUserRecord } from "../../src/core/ports/admin.ts";
import { codeOf } from "../support/error-code.ts";

const NOW = new Date("2026-06-01T12:00:00Z");
const client = { ip: null, userAgent: "admin-cli", requestId: null, deviceId: null };

function user(id: string, over: Partial<AdminUserRecord> = {}): AdminUserRecord {
  return {
    id,
    username: id.replace("usr_", ""),
    email: `${id.replace("usr_", "")}@example.com`,
    emailVerified: true,
    phone: null,
    status: "active",
    lockedUntil: null,
    mustChangePassword: false,
    createdAt: NOW,
    passwordChangedAt: null,
    statusReason: null,
    lastSigninAt: null,
    ...over,
  };
}
function identity(id: string, provider: string): IdentityRecord {
  return {
    id,
    issuer: `https://${provider}`,
    subject: id,
    provider,
    email: null,
    emailVerified: false,
    createdAt: NOW,
    lastSigninAt: NOW,
  };
}

function setup(users: AdminUserRecord[], identities: Record<string, IdentityRecord[]> = {}) {
  const writes: { kind: string; args: unknown }[] = [];
  const audits: AuditRecord[] = [];
  const byId = new Map(users.map((u) => [u.id, u]));
  const store: AdminStore = {
    listUsers: async ({ status, limit }) =>
      users.filter((u) => status === undefined || u.status === status).slice(0, limit),
    findUserById: async (id) => byId.get(id) ?? null,
    findUserByUsername: async (name) => users.find((u) => u.username === name) ?? null,
    findUsersByEmail: async (email) => users.filter((u) => u.email === email),
    userDetail: async (id) => {
      const u = byId.get(id);
      return u === undefined
        ? null
        : { user: u, identities: identities[id] ?? [], activeSessions: 1, factors: [], unusedRecoveryCodes: 0 };
    },
    setStatus: async (change) => {
      writes.push({ kind: "status", args: change });
      audits.push(change.audit);
      return { revokedSessions: change.revokeSessions === null ? 0 : 3 };
    },
    setMustChangePassword: async (userId, value, _at, audit) => {
      writes.push({ kind: "must_change", args: { userId, value } });
      audits.push(audit);
    },
    unlinkIdentity: async (u) => {
      const left = (identities[u.userId] ?? []).filter((i) => i.id !== u.identityId);
      if (left.length === 0 && !u.allowLast) return { kind: "last_identity" };
      writes.push({ kind: "unlink", args: u });
      audits.push(u.audit);
      return { kind: "unlinked", revokedSessions: 1 };
    },
    listAudit: async () => [],
  };
  const admin = createAdminService({
    clock: { now: () => NOW },
    store,
    expiry: { maxAgeDays: null, warningDays: 0, graceDays: 0 },
    actor: "ops",
    client,
  });
  return { admin, writes, audits };
}

describe("admin service", () => {
  it("names users by id, username or e-mail (case-insensitively), and refuses ambiguous e-mails", async () => {
    const { admin } = setup([
      user("usr_ann"),
      user("usr_bo"),
      user("usr_twin1", { email: "twin@example.com" }),
      user("usr_twin2", { email: "twin@example.com" }),
    ]);
    expect((await admin.showUser("usr_ann")).user.id).toBe("usr_ann");
    expect((await admin.showUser("Ann")).user.id).toBe("usr_ann");
    expect((await admin.showUser(" BO@Example.com ")).user.id).toBe("usr_bo");
    const ambiguous = await admin.showUser("twin@example.com").catch((e: DomainError) => e);
    expect(ambiguous).toMatchObject({ code: "user_ambiguous", detail: { candidates: "usr_twin1,usr_twin2" } });
    expect(await codeOf(admin.showUser("nobody"))).toBe("user_not_found");
    expect(await codeOf(admin.showUser("  "))).toBe("invalid_request");
  });

  it("disable revokes sessions and records the actor and previous status", async () => {
    const { admin, writes, audits } = setup([user("usr_ann")]);
    const r = await admin.disable("ann", { reason: "  left  " });
    expect(r).toMatchObject({
      previousStatus: "active",
      changed: true,
      revokedSessions: 3,
      user: { effectiveStatus: "disabled" },
    });
    expect(writes[0]!.args).toMatchObject({
      status: "disabled",
      lockedUntil: null,
      reason: "left",
      revokeSessions: "user_disabled",
    });
    expect(audits[0]).toMatchObject({
      type: "admin.user_disabled",
      userId: "usr_ann",
      client,
      detail: { actor: "ops", previous_status: "active" },
    });
  });

  it("enable is a no-op for active users and clears lock and reason otherwise", async () => {
    const { admin, writes } = setup([
      user("usr_ann"),
      user("usr_lo", { status: "locked", lockedUntil: new Date(NOW.getTime() + 1000), statusReason: "mfa" }),
    ]);
    expect(await admin.enable("ann")).toMatchObject({ changed: false, revokedSessions: 0 });
    expect(writes).toEqual([]);
    expect(await admin.enable("lo")).toMatchObject({ changed: true, previousStatus: "locked" });
    expect(writes[0]!.args).toMatchObject({ status: "active", lockedUntil: null, reason: null, revokeSessions: null });
  });

  it("lock: until a future time or open-ended; never over disabled or pending accounts", async () => {
    const { admin, writes } = setup([
      user("usr_ann"),
      user("usr_dis", { status: "disabled" }),
      user("usr_pen", { status: "pending" }),
    ]);
    const until = new Date(NOW.getTime() + 30 * 60_000);
    expect(await admin.lock("ann", { until })).toMatchObject({
      user: { effectiveStatus: "locked", user: { lockedUntil: until } },
      revokedSessions: 0,
    });
    expect(await admin.lock("ann", { until: null, revokeSessions: true })).toMatchObject({ revokedSessions: 3 });
    expect(writes.map((w) => (w.args as { revokeSessions: unknown }).revokeSessions)).toEqual([null, "user_locked"]);
    expect(await codeOf(admin.lock("ann", { until: NOW }))).toBe("invalid_request");
    expect(await codeOf(admin.lock("dis", { until: null }))).toBe("user_status_conflict");
    expect(await codeOf(admin.lock("pen", { until: null }))).toBe("user_status_conflict");
  });

  it("unlock only unlocks; an ended lock counts as active but can still be cleared", async () => {
    const { admin } = setup([
      user("usr_ann"),
      user("usr_old", { status: "locked", lockedUntil: new Date(NOW.getTime() - 1) }),
    ]);
    expect(await codeOf(admin.unlock("ann"))).toBe("user_status_conflict");
    expect((await admin.showUser("old")).effectiveStatus).toBe("active");
    expect(await admin.unlock("old")).toMatchObject({ previousStatus: "locked", user: { effectiveStatus: "active" } });
  });

  it("force-password-change needs a local password; --clear undoes it", async () => {
    const { admin, writes } = setup([user("usr_ann", { passwordChangedAt: NOW }), user("usr_sso")]);
    expect((await admin.forcePasswordChange("ann")).passwordStatus).toEqual({ mustChangePassword: true });
    expect(await codeOf(admin.forcePasswordChange("sso"))).toBe("password_not_set");
    expect((await admin.forcePasswordChange("ann", { clear: true })).passwordStatus).toEqual({
      mustChangePassword: false,
    });
    expect(writes.map((w) => w.args)).toEqual([
      { userId: "usr_ann", value: true },
      { userId: "usr_ann", value: false },
    ]);
  });

  it("unlink by identity id or unambiguous provider; the last identity only with force", async () => {
    const { admin, writes } = setup([user("usr_ann"), user("usr_bo")], {
      usr_ann: [identity("idn_g1", "google"), identity("idn_g2", "google"), identity("idn_e", "entra")],
      usr_bo: [identity("idn_b", "google")],
    });
    expect(await codeOf(admin.unlink("ann", "google"))).toBe("user_ambiguous");
    expect(await admin.unlink("ann", "entra")).toMatchObject({
      identity: { id: "idn_e" },
      remainingIdentities: 2,
      revokedSessions: 1,
    });
    expect(await admin.unlink("ann", "idn_g2")).toMatchObject({ identity: { id: "idn_g2" } });
    expect(writes.map((w) => (w.args as { revokeSessionsOfProvider: string }).revokeSessionsOfProvider)).toEqual([
      "entra",
      "google",
    ]);
    expect(await codeOf(admin.unlink("ann", "github"))).toBe("identity_not_found");
    expect(await codeOf(admin.unlink("bo", "google"))).toBe("last_identity");
    expect(await admin.unlink("bo", "google", { force: true })).toMatchObject({ remainingIdentities: 0 });
  });

  it("bounds list and audit limits", async () => {
    const { admin } = setup([user("usr_ann")]);
    expect(await codeOf(admin.listUsers({ limit: 0 }))).toBe("invalid_request");
    expect(await codeOf(admin.audit("ann", 1001))).toBe("invalid_request");
    expect((await admin.listUsers({ limit: 10, status: "active" })).map((v) => v.user.id)).toEqual(["usr_ann"]);
  });
});
