/**
 * The ChangePassword decisions in the core, over in-memory ports and an injected clock: what is
 * proved, in what order, what is written and what is audited. (The database and RPC sides are in
 * test/contract/password-store.test.ts and test/e2e/change-password.e2e.test.ts.)
 */
import { beforeEach, describe, expect, it } from "vitest";
import { DomainError } from "../../src/core/errors.ts";
import type { AuditRecord, UserWithPassword } from "../../src/core/model.ts";
import { createPasswordService, type PasswordServiceDeps } from "../../src/core/passwords.ts";
import type { PasswordHasher, PasswordStore } from "../../src/core/ports/passwords.ts";
import type { AttemptBudgetStore } from "../../src/core/ports/attempt-budget.ts";
import { codeOf } from "../support/error-code.ts";

const client = { ip: "192.0.2.1", userAgent: "vitest", requestId: null, deviceId: null };
const principal = { userId: "usr_1", sessionId: "ses_1", amr: ["fed"] };
const T0 = new Date("2026-05-01T10:00:00Z");

/** A transparent "hash" so the test can see what was stored; the real one is tested elsewhere. */
const hasher: PasswordHasher = {
  hash: async (pw) => `h:${pw}`,
  verify: async (h, pw) => h === `h:${pw}`,
};

function setup(initial: { hash: string | null; sessionAgeMs?: number; status?: UserWithPassword["status"] }) {
  let now = T0;
  const audit: AuditRecord[] = [];
  const state = {
    hash: initial.hash,
    user: {
      id: "usr_1",
      username: "jane.doe",
      email: "jane@example.com",
      emailVerified: true,
      phone: null,
      status: initial.status ?? "active",
      lockedUntil: null,
      mustChangePassword: true,
      createdAt: T0,
      passwordChangedAt: initial.hash === null ? null : new Date(T0.getTime() - 86_400_000),
    } as UserWithPassword,
    sessionCreatedAt: new Date(T0.getTime() - (initial.sessionAgeMs ?? 60_000)) as Date | null,
    revokedOthers: false,
  };
  const store: PasswordStore = {
    async loadForChange() {
      return { user: state.user, hash: state.hash, sessionCreatedAt: state.sessionCreatedAt };
    },
    async commitPasswordChange(w) {
      if (state.hash !== w.expectedHash) return { kind: "conflict" };
      state.hash = w.hash;
      state.user = { ...state.user, mustChangePassword: false, passwordChangedAt: w.at };
      state.revokedOthers = w.revokeOtherSessions !== null;
      audit.push(w.audit);
      return { kind: "changed", user: state.user, revokedSessions: w.revokeOtherSessions === null ? 0 : 2 };
    },
  };
  // Reservations are failure records written ahead (as the Prisma store does), here in `audit`.
  const counted = (e: AuditRecord, since: Date) =>
    e.type === "password.change_failed" &&
    (e.code === "password_incorrect" || e.code === "attempt_reserved") &&
    e.at >= since;
  const reservations = new Map<string, AuditRecord>();
  const budget: AttemptBudgetStore = {
    async reserve(_b, r) {
      const ats = audit
        .filter((e) => counted(e, r.since))
        .map((e) => e.at.getTime())
        .sort((a, b) => b - a);
      if (ats.length >= r.max) return { kind: "exhausted", nth: new Date(ats[r.max - 1]!) };
      const id = `evt_${reservations.size + 1}`;
      const row: AuditRecord = {
        type: "password.change_failed",
        at: r.now,
        code: "attempt_reserved",
        userId: r.userId,
        client: r.client,
        detail: r.detail,
      };
      reservations.set(id, row);
      audit.push(row);
      return { kind: "reserved", id };
    },
    async fail(id, code) {
      reservations.get(id)!.code = code;
    },
    async release(id) {
      audit.splice(audit.indexOf(reservations.get(id)!), 1);
    },
  };
  const deps: PasswordServiceDeps = {
    budget,
    clock: { now: () => now },
    store,
    hasher,
    audit: { record: async (e) => void audit.push(e) },
    expiry: { maxAgeDays: 90, warningDays: 14, graceDays: 0 },
    strength: { minLength: 12, maxLength: 128 },
    revokeOtherSessions: true,
    firstPasswordMaxSigninAgeSeconds: 600,
    maxFailures: 3,
    failureWindowSeconds: 900,
  };
  return {
    service: createPasswordService(deps),
    state,
    audit,
    advance: (ms: number) => (now = new Date(now.getTime() + ms)),
  };
}

const change = (currentPassword: string | undefined, newPassword: string) => ({
  principal,
  currentPassword,
  newPassword,
  client,
});

describe("changePassword", () => {
  let s: ReturnType<typeof setup>;

  describe("with a password set", () => {
    beforeEach(() => {
      s = setup({ hash: "h:old password 2025" });
    });

    it("changes it: new hash, flag cleared, expiry restarted, other sessions ended, audited", async () => {
      const r = await s.service.changePassword(change("old password 2025", "a brand new passphrase"));
      expect(s.state.hash).toBe("h:a brand new passphrase");
      expect(r.passwordStatus).toEqual({ mustChangePassword: false, passwordExpiresIn: 90 });
      expect(r.revokedSessions).toBe(2);
      expect(s.audit).toEqual([
        expect.objectContaining({
          type: "password.changed",
          userId: "usr_1",
          detail: { first_password: false, session_id: "ses_1" },
        }),
      ]);
      expect(JSON.stringify(s.audit)).not.toContain("passphrase");
    });

    it("needs the current password", async () => {
      expect(await codeOf(s.service.changePassword(change(undefined, "a brand new passphrase")))).toBe(
        "current_password_required",
      );
      expect(await codeOf(s.service.changePassword(change("", "a brand new passphrase")))).toBe(
        "current_password_required",
      );
    });

    it("refuses a wrong current password before judging the new one, and audits it", async () => {
      expect(await codeOf(s.service.changePassword(change("wrong", "short")))).toBe("password_incorrect");
      expect(s.state.hash).toBe("h:old password 2025");
      expect(s.audit.at(-1)).toMatchObject({ type: "password.change_failed", code: "password_incorrect" });
    });

    it("matches the current password in NFKC form", async () => {
      s.state.hash = "h:café 2025 password";
      expect(await codeOf(s.service.changePassword(change("cafe\u0301 2025 password", "a brand new passphrase")))).toBe(
        "ok",
      );
    });

    it("throttles wrong current passwords per user, then forgets them after the window", async () => {
      for (let i = 0; i < 3; i++) {
        expect(await codeOf(s.service.changePassword(change("wrong", "x")))).toBe("password_incorrect");
        s.advance(100_000);
      }
      // Even the right password is not checked while throttled; the refusal says when it lifts:
      // when the oldest of the 3 failures (300 s ago) leaves the 900 s window.
      const limited = await s.service
        .changePassword(change("old password 2025", "a brand new passphrase"))
        .catch((e: DomainError) => e);
      expect(limited).toMatchObject({ code: "rate_limited", detail: { retry_after_seconds: "600" } });
      s.advance(599_000);
      expect(await codeOf(s.service.changePassword(change("old password 2025", "a brand new passphrase")))).toBe(
        "rate_limited",
      );
      s.advance(2_000);
      expect(await codeOf(s.service.changePassword(change("old password 2025", "a brand new passphrase")))).toBe("ok");
    });

    it("refuses weak and reused new passwords with their reasons", async () => {
      const weak = await s.service
        .changePassword(change("old password 2025", "Password123!"))
        .catch((e: DomainError) => e);
      expect(weak).toMatchObject({
        code: "password_too_weak",
        detail: { reason: "common", min_length: "12", max_length: "128" },
      });
      expect(await codeOf(s.service.changePassword(change("old password 2025", "old password 2025")))).toBe(
        "password_reused",
      );
      expect(await codeOf(s.service.changePassword(change("old password 2025", "Jane.Doe 2026 rocks")))).toBe(
        "password_too_weak",
      );
    });

    it("reports a lost race as password_incorrect and writes nothing", async () => {
      const first = s.service.changePassword(change("old password 2025", "first new passphrase"));
      const second = s.service.changePassword(change("old password 2025", "second new passphrase"));
      const codes = await Promise.all([codeOf(first), codeOf(second)]);
      expect(codes.sort()).toEqual(["ok", "password_incorrect"]);
    });

    it("refuses users who are not active", async () => {
      s.state.user = { ...s.state.user, status: "locked", lockedUntil: null };
      expect(await codeOf(s.service.changePassword(change("old password 2025", "a brand new passphrase")))).toBe(
        "user_locked",
      );
    });

    it("refuses a session that is gone", async () => {
      s.state.sessionCreatedAt = null;
      expect(await codeOf(s.service.changePassword(change("old password 2025", "a brand new passphrase")))).toBe(
        "session_revoked",
      );
    });
  });

  describe("without a password (SSO only)", () => {
    it("sets a first password right after sign-in", async () => {
      s = setup({ hash: null, sessionAgeMs: 599_000 });
      const r = await s.service.changePassword(change(undefined, "my first passphrase"));
      expect(s.state.hash).toBe("h:my first passphrase");
      expect(r.passwordStatus).toEqual({ mustChangePassword: false, passwordExpiresIn: 90 });
      expect(s.audit[0]).toMatchObject({ type: "password.changed", detail: { first_password: true } });
    });

    it("needs a recent sign-in", async () => {
      s = setup({ hash: null, sessionAgeMs: 601_000 });
      expect(await codeOf(s.service.changePassword(change(undefined, "my first passphrase")))).toBe(
        "reauthentication_required",
      );
      expect(s.state.hash).toBeNull();
    });

    it("refuses a current password it cannot have", async () => {
      s = setup({ hash: null });
      expect(await codeOf(s.service.changePassword(change("anything", "my first passphrase")))).toBe("invalid_request");
    });
  });
});
