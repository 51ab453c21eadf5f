/** The `risk:` and `mfa:` configuration sections and the provider's upstream-MFA trust. */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config/load.ts";

const load = (overrides: Record<string, unknown>) => loadConfig({ env: {}, overrides });
const message = (overrides: Record<string, unknown>) => {
  try {
    load(overrides);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error("expected a ConfigError");
};

describe("risk and mfa configuration", () => {
  it("has the documented defaults", () => {
    const c = load({});
    expect(c.risk).toMatchObject({
      thresholds: { medium: 30, high: 60 },
      weights: {
        new_device: 30,
        new_network: 15,
        new_country: 25,
        impossible_travel: 60,
        ip_denylisted: 60,
        ip_allowlisted: -25,
        upstream_mfa: -40,
      },
      ip_allowlist: [],
      ip_denylist: [],
      network_prefix: { ipv4: 24, ipv6: 48 },
    });
    expect(c.risk.geoip_db).toBeUndefined();
    expect(c.mfa).toMatchObject({
      require_at: "medium",
      no_factor: "deny_high_risk",
      challenge_ttl_seconds: 300,
      max_attempts: 5,
      trusted_device_days: 30,
      trusted_device_max_level: "medium",
      recovery_codes: 10,
      totp: { issuer: "Identity", window: 1 },
    });
  });

  it("providers do not trust upstream MFA unless told", () => {
    const c = load({
      providers: {
        a: { issuer: "https://a.example", client_ids: ["x"] },
        b: { issuer: "https://b.example", client_ids: ["x"], trust_upstream_mfa: true, mfa_acr_values: ["mfa"] },
      },
    });
    expect(c.providers["a"]).toMatchObject({ trust_upstream_mfa: false, mfa_acr_values: [] });
    expect(c.providers["b"]).toMatchObject({ trust_upstream_mfa: true, mfa_acr_values: ["mfa"] });
  });

  it("accepts addresses and CIDR blocks, IPv4 and IPv6, and names a bad entry", () => {
    expect(
      load({ "risk.ip_denylist": ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"] }).risk.ip_denylist,
    ).toHaveLength(3);
    expect(message({ "risk.ip_denylist": ["203.0.113.0/33"] })).toMatch(
      /risk\.ip_denylist\.0: must be an IP address or a CIDR block/,
    );
    expect(message({ "risk.ip_allowlist": ["example.com"] })).toMatch(/risk\.ip_allowlist\.0/);
    expect(message({ "risk.ip_allowlist": ["10.0.0.0/8/1"] })).toMatch(/risk\.ip_allowlist\.0/);
  });

  it("refuses thresholds out of order, unknown weights and unknown policy values", () => {
    expect(message({ "risk.thresholds": { medium: 60, high: 60 } })).toMatch(
      /risk\.thresholds: medium must be below high/,
    );
    expect(message({ "risk.weights": { new_phone: 10 } })).toMatch(/risk\.weights/);
    expect(message({ "mfa.no_factor": "maybe" })).toMatch(/mfa\.no_factor/);
    expect(message({ "mfa.always_for_users": ["alice"] })).toMatch(/mfa\.always_for_users\.0: user ids look like usr_/);
    expect(message({ "mfa.max_attempts": 0 })).toMatch(/mfa\.max_attempts/);
  });
});
