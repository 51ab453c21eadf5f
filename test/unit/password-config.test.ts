import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config/load.ts";

const load = (overrides: Record<string, unknown>) => loadConfig({ env: {}, overrides });

describe("password configuration", () => {
  it("has NIST-leaning defaults: no expiry, 12..128 characters, OWASP Argon2id parameters", () => {
    const { password } = load({});
    expect(password).toEqual({
      argon2: { memory_kib: 19456, time_cost: 2, parallelism: 1 },
      warning_days: 14,
      grace_days: 0,
      min_length: 12,
      max_length: 128,
      revoke_other_sessions: true,
      first_password_max_signin_age_seconds: 600,
      max_failed_changes: 5,
      failed_changes_window_seconds: 900,
    });
    expect(password.max_age_days).toBeUndefined();
  });

  it("takes an expiry policy", () => {
    const { password } = load({ password: { max_age_days: 90, warning_days: 10, grace_days: 5 } });
    expect(password).toMatchObject({ max_age_days: 90, warning_days: 10, grace_days: 5 });
  });

  it("refuses Argon2id parameters below OWASP's floor, naming the key", () => {
    expect(() => load({ "password.argon2.memory_kib": 4096 })).toThrow(/password\.argon2\.memory_kib/);
    expect(() => load({ password: { argon2: { memory_kib: 7168, time_cost: 1 } } })).toThrow(
      /password\.argon2: memory_kib × time_cost/,
    );
    expect(load({ password: { argon2: { memory_kib: 7168, time_cost: 5 } } }).password.argon2.time_cost).toBe(5);
  });

  it("refuses inconsistent policies", () => {
    expect(() => load({ password: { min_length: 64, max_length: 32 } })).toThrow(
      /password\.min_length: must not exceed/,
    );
    expect(() => load({ password: { max_age_days: 10, warning_days: 10 } })).toThrow(/password\.warning_days/);
    expect(() => load({ password: { min_length: 6 } })).toThrow(ConfigError);
    expect(() => load({ password: { unknown_rule: true } })).toThrow(/unknown_rule|Unrecognized/);
  });
});
