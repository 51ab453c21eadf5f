/**
 * The risk function and the MFA policy, one signal and one rule at a time. Pure: every input,
 * including "now", is given.
 */
import { describe, expect, it } from "vitest";
import {
  assessRisk,
  decideMfa,
  haversineKm,
  type MfaPolicy,
  type RiskAssessment,
  type RiskConfig,
  type RiskObservation,
} from "../../src/core/risk.ts";

const NOW = new Date("2026-03-01T12:00:00Z");
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const CONFIG: RiskConfig = {
  weights: {
    new_device: 30,
    new_network: 15,
    new_country: 25,
    impossible_travel: 60,
    ip_denylisted: 60,
    ip_allowlisted: -25,
    recent_failures: 20,
    long_inactivity: 15,
    new_identity_link: 25,
    upstream_mfa: -40,
  },
  thresholds: { medium: 30, high: 60 },
  recentFailuresThreshold: 3,
  longInactivityDays: 90,
  maxTravelSpeedKmh: 1000,
  minTravelDistanceKm: 300,
};

const BERLIN = { latitude: 52.52, longitude: 13.405 };
const SYDNEY = { latitude: -33.8688, longitude: 151.2093 };
const POTSDAM = { latitude: 52.39, longitude: 13.06 };

/** A returning user on a known device and network, in a known country: nothing stands out. */
function known(over: Partial<RiskObservation> = {}): RiskObservation {
  return {
    now: NOW,
    account: "existing",
    hasHistory: true,
    device: { key: "id:abc", known: true },
    network: { value: "203.0.113.0/24", known: true },
    geo: { country: "DE", ...BERLIN },
    knownCountries: ["DE"],
    lastLocation: { at: new Date(NOW.getTime() - DAY), ...BERLIN },
    ipList: null,
    recentFailures: 0,
    lastSigninAt: new Date(NOW.getTime() - DAY),
    upstreamMfa: false,
    ...over,
  };
}

const codes = (a: RiskAssessment) => a.signals.map((s) => s.code);

describe("assessRisk", () => {
  it("a known context scores 0, low, with no reason", () => {
    expect(assessRisk(known(), CONFIG)).toEqual({ score: 0, level: "low", signals: [], reason: null });
  });

  describe("one signal at a time", () => {
    it("new_device: an unknown device of a user with history", () => {
      const a = assessRisk(known({ device: { key: "id:other", known: false } }), CONFIG);
      expect(a).toMatchObject({ score: 30, level: "medium", reason: "new_device" });
      expect(a.signals).toEqual([{ code: "new_device", weight: 30 }]);
    });

    it("new_device: a client that sends nothing to recognise it by is always new", () => {
      const a = assessRisk(known({ device: { key: null, known: false } }), CONFIG);
      expect(a.signals).toEqual([{ code: "new_device", weight: 30, detail: { identified: "no" } }]);
    });

    it("new_network", () => {
      const a = assessRisk(known({ network: { value: "198.51.100.0/24", known: false } }), CONFIG);
      expect(a).toMatchObject({ score: 15, level: "low", reason: "new_network" });
    });

    it("no network signal without an address", () => {
      expect(codes(assessRisk(known({ network: { value: null, known: false } }), CONFIG))).toEqual([]);
    });

    it("new_country: GeoIP places the client in a country the user never signed in from", () => {
      const a = assessRisk(known({ geo: { country: "FR", latitude: null, longitude: null } }), CONFIG);
      expect(a.signals).toEqual([{ code: "new_country", weight: 25, detail: { country: "FR" } }]);
    });

    it("no country signal without GeoIP, or before any country was known", () => {
      expect(codes(assessRisk(known({ geo: null }), CONFIG))).toEqual([]);
      expect(
        codes(
          assessRisk(known({ geo: { country: "FR", latitude: null, longitude: null }, knownCountries: [] }), CONFIG),
        ),
      ).toEqual([]);
    });

    it("impossible_travel: Berlin to Sydney in two hours", () => {
      const a = assessRisk(
        known({
          geo: { country: "DE", ...SYDNEY },
          lastLocation: { at: new Date(NOW.getTime() - 2 * HOUR), ...BERLIN },
        }),
        CONFIG,
      );
      expect(a.reason).toBe("impossible_travel");
      expect(a.level).toBe("high");
      const signal = a.signals[0]!;
      expect(signal.detail).toMatchObject({ minutes: 120 });
      expect(signal.detail!["distance_km"]).toBeGreaterThan(16_000);
      expect(signal.detail!["speed_kmh"]).toBeGreaterThan(8000);
    });

    it("no travel signal when the trip was possible, or too short to tell", () => {
      const slow = known({
        geo: { country: "DE", ...SYDNEY },
        lastLocation: { at: new Date(NOW.getTime() - 30 * HOUR), ...BERLIN },
      });
      expect(codes(assessRisk(slow, CONFIG))).toEqual([]);
      const near = known({
        geo: { country: "DE", ...POTSDAM },
        lastLocation: { at: new Date(NOW.getTime() - 60_000), ...BERLIN },
      });
      expect(codes(assessRisk(near, CONFIG))).toEqual([]);
    });

    it("ip_denylisted and ip_allowlisted", () => {
      expect(assessRisk(known({ ipList: "deny" }), CONFIG)).toMatchObject({
        score: 60,
        level: "high",
        reason: "ip_denylisted",
      });
      const allowed = assessRisk(known({ ipList: "allow", device: { key: "id:x", known: false } }), CONFIG);
      expect(allowed).toMatchObject({ score: 5, level: "low", reason: "new_device" });
    });

    it("recent_failures from the threshold on", () => {
      expect(codes(assessRisk(known({ recentFailures: 2 }), CONFIG))).toEqual([]);
      expect(assessRisk(known({ recentFailures: 3 }), CONFIG).signals).toEqual([
        { code: "recent_failures", weight: 20, detail: { count: 3 } },
      ]);
    });

    it("long_inactivity from the configured number of days on", () => {
      expect(codes(assessRisk(known({ lastSigninAt: new Date(NOW.getTime() - 89 * DAY) }), CONFIG))).toEqual([]);
      expect(assessRisk(known({ lastSigninAt: new Date(NOW.getTime() - 90 * DAY) }), CONFIG).signals).toEqual([
        { code: "long_inactivity", weight: 15, detail: { days: 90 } },
      ]);
    });

    it("new_identity_link: a new identity attached to an existing user, at least medium whatever the score", () => {
      expect(assessRisk(known({ account: "link" }), CONFIG)).toMatchObject({
        score: 25,
        level: "medium",
        reason: "new_identity_link",
      });
      // The floor is configurable (risk.email_link_min_level), and holds with the signal weighed 0.
      expect(assessRisk(known({ account: "link" }), { ...CONFIG, emailLinkMinLevel: "high" })).toMatchObject({
        level: "high",
      });
      expect(assessRisk(known({ account: "link" }), { ...CONFIG, emailLinkMinLevel: "low" })).toMatchObject({
        level: "low",
      });
      const unweighed = { ...CONFIG, weights: { ...CONFIG.weights, new_identity_link: 0 } };
      expect(assessRisk(known({ account: "link" }), unweighed)).toMatchObject({
        score: 0,
        level: "medium",
        reason: "new_identity_link",
      });
      // Nothing else is lifted.
      expect(assessRisk(known(), CONFIG)).toMatchObject({ level: "low" });
    });

    it("upstream_mfa lowers the score, never below 0", () => {
      const a = assessRisk(
        known({ device: { key: "id:x", known: false }, network: { value: "n", known: false }, upstreamMfa: true }),
        CONFIG,
      );
      expect(a).toMatchObject({ score: 5, level: "low", reason: "new_device" });
      expect(assessRisk(known({ upstreamMfa: true }), CONFIG)).toMatchObject({ score: 0, reason: null });
    });
  });

  it("a brand-new account has no history: device, network, country and travel do not count", () => {
    const a = assessRisk(
      known({
        account: "create",
        hasHistory: false,
        device: { key: "id:x", known: false },
        network: { value: "n", known: false },
        geo: { country: "FR", ...SYDNEY },
        lastSigninAt: null,
      }),
      CONFIG,
    );
    expect(a).toEqual({ score: 0, level: "low", signals: [], reason: null });
  });

  it("sums signals, caps at 100, orders strongest first and names the strongest as the reason", () => {
    const a = assessRisk(
      known({
        ipList: "deny",
        device: { key: "id:x", known: false },
        network: { value: "n", known: false },
        geo: { country: "FR", latitude: null, longitude: null },
      }),
      CONFIG,
    );
    expect(codes(a)).toEqual(["ip_denylisted", "new_device", "new_country", "new_network"]);
    expect(a).toMatchObject({ score: 100, level: "high", reason: "ip_denylisted" });
  });

  it("breaks ties between equal weights by the fixed signal order (deterministic)", () => {
    const config = { ...CONFIG, weights: { ...CONFIG.weights, new_network: 30 } };
    const a = assessRisk(known({ device: { key: "x", known: false }, network: { value: "n", known: false } }), config);
    expect(codes(a)).toEqual(["new_device", "new_network"]);
  });

  it("levels follow the configured thresholds", () => {
    const device = known({ device: { key: "x", known: false } });
    expect(assessRisk(device, { ...CONFIG, thresholds: { medium: 31, high: 60 } }).level).toBe("low");
    expect(assessRisk(device, { ...CONFIG, thresholds: { medium: 10, high: 30 } }).level).toBe("high");
  });

  it("a signal weighted 0 is left out", () => {
    const config = { ...CONFIG, weights: { ...CONFIG.weights, new_device: 0 } };
    expect(assessRisk(known({ device: { key: "x", known: false } }), config)).toMatchObject({
      signals: [],
      reason: null,
    });
  });
});

describe("decideMfa", () => {
  const POLICY: MfaPolicy = {
    requireAt: "medium",
    alwaysForUsers: [],
    trustedDeviceMaxLevel: "medium",
    noFactor: "deny_high_risk",
    highRiskMethods: [],
    recommendedMethods: { low: [], medium: ["totp"], high: ["totp"] },
  };
  const low = assessRisk(known(), CONFIG);
  const medium = assessRisk(known({ device: { key: "x", known: false } }), CONFIG);
  const high = assessRisk(known({ ipList: "deny" }), CONFIG);
  const enrolled = { userId: "usr_a", deviceTrusted: false, methods: ["totp", "recovery_code"] as const };

  it("low risk needs nothing", () => {
    expect(decideMfa(low, enrolled, POLICY)).toEqual({ kind: "allow", requireMfa: false, skipped: null });
  });

  it("medium and up challenge an enrolled user with their methods and the strongest reason", () => {
    expect(decideMfa(medium, enrolled, POLICY)).toEqual({
      kind: "challenge",
      requireMfa: true,
      reason: "new_device",
      methods: ["totp", "recovery_code"],
    });
    expect(decideMfa(high, enrolled, POLICY)).toMatchObject({ kind: "challenge", reason: "ip_denylisted" });
  });

  it("high_risk_methods: at high risk only those methods; a user with none of them has no factor there", () => {
    const policy: MfaPolicy = { ...POLICY, highRiskMethods: ["webauthn"] };
    const both = { ...enrolled, methods: ["totp", "recovery_code", "webauthn"] as const };
    expect(decideMfa(high, both, policy)).toMatchObject({ kind: "challenge", methods: ["webauthn"] });
    // Below high, every method the user has.
    expect(decideMfa(medium, both, policy)).toMatchObject({
      kind: "challenge",
      methods: ["totp", "recovery_code", "webauthn"],
    });
    // TOTP only, at high risk: no phishing-resistant factor, so no_factor decides (deny_high_risk: deny).
    expect(decideMfa(high, enrolled, policy)).toEqual({ kind: "deny", requireMfa: true, reason: "ip_denylisted" });
    expect(decideMfa(high, enrolled, { ...policy, noFactor: "allow" })).toMatchObject({ kind: "allow_unenrolled" });
  });

  it("require_at moves the bar; never turns MFA off", () => {
    expect(decideMfa(medium, enrolled, { ...POLICY, requireAt: "high" }).kind).toBe("allow");
    expect(decideMfa(low, enrolled, { ...POLICY, requireAt: "low" })).toMatchObject({
      kind: "challenge",
      reason: "policy",
    });
    expect(decideMfa(high, enrolled, { ...POLICY, requireAt: "never" }).kind).toBe("allow");
  });

  it("always_for_users: MFA on every sign-in, even low risk on a trusted device", () => {
    const policy = { ...POLICY, alwaysForUsers: ["usr_a"] };
    expect(decideMfa(low, { ...enrolled, deviceTrusted: true }, policy)).toMatchObject({
      kind: "challenge",
      reason: "policy",
    });
    expect(decideMfa(low, { ...enrolled, userId: "usr_b" }, policy).kind).toBe("allow");
  });

  it("a trusted device skips MFA up to trusted_device_max_level, not above", () => {
    const trusted = { ...enrolled, deviceTrusted: true };
    expect(decideMfa(medium, trusted, POLICY)).toEqual({ kind: "allow", requireMfa: false, skipped: "trusted_device" });
    expect(decideMfa(high, trusted, POLICY).kind).toBe("challenge");
    expect(decideMfa(high, trusted, { ...POLICY, trustedDeviceMaxLevel: "high" }).kind).toBe("allow");
    expect(decideMfa(medium, trusted, { ...POLICY, trustedDeviceMaxLevel: "none" }).kind).toBe("challenge");
  });

  it("a link by e-mail to an account with a factor is always challenged: any level, any policy, trusted device or not", () => {
    const link = { ...enrolled, account: "link" as const };
    const challenge = {
      kind: "challenge",
      requireMfa: true,
      reason: "new_identity_link",
      methods: ["totp", "recovery_code"],
    };
    expect(decideMfa(low, link, POLICY)).toEqual(challenge);
    expect(decideMfa(low, link, { ...POLICY, requireAt: "never" })).toEqual(challenge);
    expect(decideMfa(medium, { ...link, deviceTrusted: true }, POLICY)).toEqual(challenge);
    // Without a factor the level decides, as for any sign-in.
    expect(decideMfa(low, { ...link, methods: [] }, POLICY).kind).toBe("allow");
    expect(decideMfa(low, { ...enrolled, account: "existing" as const }, POLICY).kind).toBe("allow");
  });

  describe("no factor enrolled", () => {
    const none = { userId: "usr_a", deviceTrusted: false, methods: [] };
    it("allow: let in with the enrollment signal", () => {
      expect(decideMfa(high, none, { ...POLICY, noFactor: "allow" })).toEqual({
        kind: "allow_unenrolled",
        requireMfa: true,
        reason: "ip_denylisted",
      });
    });
    it("deny: refused at any level that requires MFA", () => {
      expect(decideMfa(medium, none, { ...POLICY, noFactor: "deny" })).toEqual({
        kind: "deny",
        requireMfa: true,
        reason: "new_device",
      });
    });
    it("deny_high_risk (default): refused at high, let in with the signal below", () => {
      expect(decideMfa(high, none, POLICY).kind).toBe("deny");
      expect(decideMfa(medium, none, POLICY).kind).toBe("allow_unenrolled");
      expect(decideMfa(low, none, POLICY).kind).toBe("allow");
    });
  });
});

describe("haversineKm", () => {
  it("measures great-circle distances", () => {
    expect(haversineKm(BERLIN.latitude, BERLIN.longitude, BERLIN.latitude, BERLIN.longitude)).toBe(0);
    // Berlin–Sydney is about 16,100 km.
    expect(Math.round(haversineKm(BERLIN.latitude, BERLIN.longitude, SYDNEY.latitude, SYDNEY.longitude) / 100)).toBe(
      161,
    );
  });
});
