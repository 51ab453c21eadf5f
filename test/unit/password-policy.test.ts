/**
 * Password-expiry arithmetic at its boundaries, with an injected "now": the last instant of the
 * warning-free period, the warning window, the day of expiry, the grace period and its end.
 */
import { describe, expect, it } from "vitest";
import {
  NO_PASSWORD_EXPIRY,
  type PasswordExpiryPolicy,
  passwordStatus,
  passwordStatusOf,
} from "../../src/core/password-policy.ts";
import type { UserWithPassword } from "../../src/core/model.ts";

const DAY = 86_400_000;
const changedAt = new Date("2026-01-01T12:00:00Z");
/** 90-day passwords, warned 14 days ahead, 7 days of grace: expiry at 2026-04-01T12:00:00Z. */
const policy: PasswordExpiryPolicy = { maxAgeDays: 90, warningDays: 14, graceDays: 7 };
const expiry = changedAt.getTime() + 90 * DAY;
const at = (offsetMs: number) => new Date(expiry + offsetMs);
const status = (now: Date, mustChangePassword = false, p = policy) =>
  passwordStatus({ changedAt, mustChangePassword }, now, p);

describe("passwordStatus", () => {
  it("right after a change: 90 days left, no warning", () => {
    expect(status(changedAt)).toEqual({ mustChangePassword: false, passwordExpiresIn: 90 });
  });

  it("just outside the warning window: 15 days (rounded up), no warning", () => {
    expect(status(at(-14 * DAY - 1))).toEqual({ mustChangePassword: false, passwordExpiresIn: 15 });
  });

  it("first instant of the warning window (exactly 14 days left): expiring", () => {
    expect(status(at(-14 * DAY))).toEqual({
      mustChangePassword: false,
      passwordExpiresIn: 14,
      passwordWarning: "expiring",
    });
  });

  it("day of expiry (under 24 hours left): 1 day, expiring", () => {
    expect(status(at(-DAY))).toEqual({ mustChangePassword: false, passwordExpiresIn: 1, passwordWarning: "expiring" });
    expect(status(at(-1))).toEqual({ mustChangePassword: false, passwordExpiresIn: 1, passwordWarning: "expiring" });
  });

  it("the instant of expiry starts the grace period: 0 days, expired_grace, no forced change yet", () => {
    expect(status(at(0))).toEqual({
      mustChangePassword: false,
      passwordExpiresIn: 0,
      passwordWarning: "expired_grace",
    });
    // Never -0: it would serialize as 0 but compare oddly.
    expect(Object.is(status(at(1)).passwordExpiresIn, 0)).toBe(true);
  });

  it("keeps counting down through the grace period", () => {
    expect(status(at(DAY))).toEqual({
      mustChangePassword: false,
      passwordExpiresIn: -1,
      passwordWarning: "expired_grace",
    });
    expect(status(at(7 * DAY - 1))).toEqual({
      mustChangePassword: false,
      passwordExpiresIn: -6,
      passwordWarning: "expired_grace",
    });
  });

  it("end of grace: expired, and the password must be changed", () => {
    expect(status(at(7 * DAY))).toEqual({
      mustChangePassword: true,
      passwordExpiresIn: -7,
      passwordWarning: "expired",
    });
    expect(status(at(400 * DAY))).toEqual({
      mustChangePassword: true,
      passwordExpiresIn: -400,
      passwordWarning: "expired",
    });
  });

  it("without grace, expiry is expired at once", () => {
    const noGrace = { ...policy, graceDays: 0 };
    expect(status(at(-1), false, noGrace)).toMatchObject({ passwordExpiresIn: 1, passwordWarning: "expiring" });
    expect(status(at(0), false, noGrace)).toEqual({
      mustChangePassword: true,
      passwordExpiresIn: 0,
      passwordWarning: "expired",
    });
  });

  it("without a warning window, no expiring state", () => {
    const noWarning = { ...policy, warningDays: 0 };
    expect(status(at(-1), false, noWarning)).toEqual({ mustChangePassword: false, passwordExpiresIn: 1 });
  });

  it("an operator's flag forces a change in every state, and keeps the expiry fields", () => {
    expect(status(changedAt, true)).toEqual({ mustChangePassword: true, passwordExpiresIn: 90 });
    expect(status(at(-DAY), true)).toEqual({
      mustChangePassword: true,
      passwordExpiresIn: 1,
      passwordWarning: "expiring",
    });
  });

  it("users without a local password get only the flag", () => {
    expect(passwordStatus({ changedAt: null, mustChangePassword: false }, at(0), policy)).toEqual({
      mustChangePassword: false,
    });
    expect(passwordStatus({ changedAt: null, mustChangePassword: true }, at(0), policy)).toEqual({
      mustChangePassword: true,
    });
  });

  it("passwords that never expire get only the flag", () => {
    expect(status(at(10_000 * DAY), false, NO_PASSWORD_EXPIRY)).toEqual({ mustChangePassword: false });
  });

  it("passwordStatusOf reads the user's credential time and flag", () => {
    const user: UserWithPassword = {
      id: "usr_1",
      username: "ann",
      email: null,
      emailVerified: false,
      phone: null,
      status: "active",
      lockedUntil: null,
      mustChangePassword: false,
      createdAt: changedAt,
      passwordChangedAt: changedAt,
    };
    expect(passwordStatusOf(user, at(7 * DAY), policy)).toMatchObject({
      mustChangePassword: true,
      passwordWarning: "expired",
    });
    expect(passwordStatusOf({ ...user, passwordChangedAt: null }, at(7 * DAY), policy)).toEqual({
      mustChangePassword: false,
    });
  });
});
