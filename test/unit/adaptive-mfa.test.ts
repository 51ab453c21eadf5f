/** Gathering the risk observation (history, lists, GeoIP, upstream MFA) with fakes; no I/O. */
import { describe, expect, it } from "vitest";
import { createAdaptiveMfa, upstreamDidMfa } from "../../src/core/adaptive-mfa.ts";
import type { SigninHistory, SigninHistoryReader } from "../../src/core/ports/risk-history.ts";
import type { ClientInfo, ExternalIdentity } from "../../src/core/model.ts";
import { deviceKeyOf } from "../../src/core/signin-context.ts";

const NOW = new Date("2026-03-01T12:00:00Z");
const client: ClientInfo = { ip: "203.0.113.7", userAgent: "vitest/1", requestId: null, deviceId: "dev-1" };

function identity(over: Partial<ExternalIdentity> & { trust?: boolean } = {}): ExternalIdentity {
  const { trust, ...rest } = over;
  return {
    provider: {
      name: "acme",
      signup: "allow",
      linkByEmail: "never",
      trustUpstreamMfa: trust ?? false,
      mfaAcrValues: ["urn:acme:mfa"],
    },
    issuer: "https://acme.example",
    subject: "s",
    email: null,
    emailVerified: false,
    name: null,
    preferredUsername: null,
    phone: null,
    amr: [],
    acr: null,
    use: null,
    serverNonce: null,
    ...rest,
  };
}

function history(over: Partial<SigninHistory> = {}): SigninHistory {
  return {
    lastSigninAt: new Date(NOW.getTime() - 86_400_000),
    deviceKnown: true,
    trustedDevice: null,
    hasHistory: true,
    networkKnown: true,
    countries: [],
    lastLocation: null,
    recentFailures: 0,
    methods: ["totp"],
    ...over,
  };
}

function subject(h: SigninHistory, over: { allow?: string[]; deny?: string[] } = {}) {
  const asked: Parameters<SigninHistoryReader["signinHistory"]>[] = [];
  const mfa = createAdaptiveMfa({
    history: { signinHistory: async (...args) => (asked.push(args), h) },
    geo: { locate: (ip) => (ip === "203.0.113.7" ? { country: "DE", latitude: 52.5, longitude: 13.4 } : null) },
    risk: {
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
    },
    policy: {
      requireAt: "medium",
      alwaysForUsers: [],
      trustedDeviceMaxLevel: "medium",
      noFactor: "deny_high_risk",
      highRiskMethods: [],
      recommendedMethods: { low: [], medium: ["totp"], high: ["totp"] },
    },
    ipAllowlist: over.allow ?? [],
    ipDenylist: over.deny ?? [],
    networkPrefix: { ipv4: 24, ipv6: 48 },
    recentFailuresWindowSeconds: 3600,
  });
  return { mfa, asked };
}

const evaluate = (
  h: SigninHistory,
  over: { allow?: string[]; deny?: string[]; identity?: ExternalIdentity; client?: typeof client } = {},
) =>
  subject(h, over).mfa.evaluate({
    identity: over.identity ?? identity(),
    userId: "usr_a",
    account: "existing",
    client: over.client ?? client,
    now: NOW,
    trustedDevice: "hash-of-credential",
  });

describe("createAdaptiveMfa", () => {
  it("asks the store about this device, this network and the failure window", async () => {
    const { mfa, asked } = subject(history());
    await mfa.evaluate({
      identity: identity(),
      userId: "usr_a",
      account: "existing",
      client,
      now: NOW,
      trustedDevice: "hash-of-credential",
    });
    expect(asked).toEqual([
      [
        "usr_a",
        {
          deviceKey: deviceKeyOf(client)!.key,
          network: "203.0.113.0/24",
          failuresSince: new Date(NOW.getTime() - 3_600_000),
          trustedDevice: "hash-of-credential",
        },
      ],
    ]);
  });

  it("does not read history for a sign-in that creates the user", async () => {
    const { mfa, asked } = subject(history({ deviceKnown: false }));
    const gate = await mfa.evaluate({
      identity: identity(),
      userId: null,
      account: "create",
      client,
      now: NOW,
      trustedDevice: null,
    });
    expect(asked).toEqual([]);
    expect(gate.decision.kind).toBe("allow");
  });

  it("a known context is low; the audit detail holds signals, score and decision, no addresses", async () => {
    const gate = await evaluate(history());
    expect(gate.summary).toEqual({
      score: 0,
      level: "low",
      requireMfa: false,
      recommendedMethods: [],
      signals: [],
      reason: null,
    });
    expect(gate.auditDetail).toEqual({
      score: 0,
      level: "low",
      signals: [],
      decision: "allow",
      require_mfa: false,
      device: "id",
      trusted_device: false,
      country: "DE",
    });
    expect(JSON.stringify(gate.auditDetail)).not.toContain("203.0.113");
    expect(gate.seen).toEqual({
      deviceKey: deviceKeyOf(client)!.key,
      network: "203.0.113.0/24",
      geo: { country: "DE", latitude: 52.5, longitude: 13.4 },
      trustedDeviceId: null,
      // Sightings were not read (no times in this history): the write records them.
      fresh: { device: false, network: false },
    });
  });

  it("leaves out of the write only a device and network seen within the last minute, the network at the same place", async () => {
    const place = { country: "DE", latitude: 52.5, longitude: 13.4 };
    const ago = (ms: number) => new Date(NOW.getTime() - ms);
    const fresh = async (over: Partial<SigninHistory>) => (await evaluate(history(over))).seen.fresh;
    expect(await fresh({ deviceSeenAt: ago(59_000), networkSeen: { at: ago(59_000), ...place } })).toEqual({
      device: true,
      network: true,
    });
    // Stale: written again.
    expect(await fresh({ deviceSeenAt: ago(61_000), networkSeen: { at: ago(61_000), ...place } })).toEqual({
      device: false,
      network: false,
    });
    // Moved (GeoIP places the network elsewhere now, or did not place it before): written at once.
    for (const moved of [
      { ...place, latitude: 48.1 },
      { ...place, country: "FR" },
      { country: null, latitude: null, longitude: null },
    ])
      expect((await fresh({ networkSeen: { at: ago(1_000), ...moved } }))?.network).toBe(false);
    // Not known (a new device or network): always written, whatever a stray time says.
    expect(
      await fresh({
        deviceKnown: false,
        deviceSeenAt: ago(1_000),
        networkKnown: false,
        networkSeen: { at: ago(1_000), ...place },
      }),
    ).toEqual({ device: false, network: false });
  });

  it("a new device challenges an enrolled user", async () => {
    const gate = await evaluate(history({ deviceKnown: false }));
    expect(gate.decision).toEqual({ kind: "challenge", requireMfa: true, reason: "new_device", methods: ["totp"] });
    expect(gate.summary).toMatchObject({
      level: "medium",
      requireMfa: true,
      recommendedMethods: ["totp"],
      signals: ["new_device"],
      reason: "new_device",
    });
    expect(gate.auditDetail).toMatchObject({
      decision: "challenge",
      reason: "new_device",
      methods: ["totp"],
      signals: [{ code: "new_device", weight: 30 }],
    });
  });

  it("deny and allow lists match CIDRs and single addresses; deny wins", async () => {
    expect((await evaluate(history(), { deny: ["203.0.113.0/24"] })).assessment.reason).toBe("ip_denylisted");
    expect((await evaluate(history(), { deny: ["203.0.113.7"] })).assessment.reason).toBe("ip_denylisted");
    expect((await evaluate(history(), { deny: ["198.51.100.0/24"] })).assessment.signals).toEqual([]);
    expect((await evaluate(history(), { allow: ["203.0.0.0/16"] })).assessment.signals.map((s) => s.code)).toEqual([
      "ip_allowlisted",
    ]);
    expect((await evaluate(history(), { allow: ["203.0.0.0/16"], deny: ["203.0.113.0/24"] })).assessment.reason).toBe(
      "ip_denylisted",
    );
  });

  it("a device credential found for the user skips MFA and is recorded as used; an expired one does not", async () => {
    const risky = { networkKnown: false, lastSigninAt: new Date(NOW.getTime() - 100 * 86_400_000) };
    const trusted = history({ ...risky, trustedDevice: { id: "tdv_1", expiresAt: new Date(NOW.getTime() + 1000) } });
    const gate = await evaluate(trusted);
    expect(gate.assessment.level).toBe("medium");
    expect(gate.decision).toEqual({ kind: "allow", requireMfa: false, skipped: "trusted_device" });
    expect(gate.auditDetail).toMatchObject({ trusted_device: true, skipped_by: "trusted_device" });
    expect(gate.seen.trustedDeviceId).toBe("tdv_1");

    const expired = history({ ...risky, trustedDevice: { id: "tdv_1", expiresAt: NOW } });
    expect((await evaluate(expired)).decision.kind).toBe("challenge");
  });

  it('a known device id is only "seen before": without a credential it never skips MFA', async () => {
    const known = history({
      deviceKnown: true,
      networkKnown: false,
      lastSigninAt: new Date(NOW.getTime() - 100 * 86_400_000),
    });
    const gate = await evaluate(known);
    expect(gate.deviceTrusted).toBe(false);
    expect(gate.decision.kind).toBe("challenge");
  });

  it("upstream MFA lowers the risk only for a provider configured to trust it", async () => {
    const mfaToken = { amr: ["pwd", "mfa"] };
    expect(
      (await evaluate(history({ deviceKnown: false }), { identity: identity({ ...mfaToken, trust: true }) })).decision
        .kind,
    ).toBe("allow");
    expect(
      (await evaluate(history({ deviceKnown: false }), { identity: identity({ ...mfaToken, trust: false }) })).decision
        .kind,
    ).toBe("challenge");
  });
});

describe("upstreamDidMfa", () => {
  it("believes amr mfa, two factor categories, or a configured acr", () => {
    expect(upstreamDidMfa({ amr: ["mfa"], acr: null }, [])).toBe(true);
    expect(upstreamDidMfa({ amr: ["pwd", "otp"], acr: null }, [])).toBe(true);
    expect(upstreamDidMfa({ amr: ["hwk", "fpt"], acr: null }, [])).toBe(true);
    expect(upstreamDidMfa({ amr: [], acr: "urn:acme:mfa" }, ["urn:acme:mfa"])).toBe(true);
  });

  it("does not count one factor, or two of the same kind", () => {
    expect(upstreamDidMfa({ amr: ["pwd"], acr: null }, [])).toBe(false);
    expect(upstreamDidMfa({ amr: ["otp", "sms"], acr: null }, [])).toBe(false);
    expect(upstreamDidMfa({ amr: [], acr: "urn:other" }, ["urn:acme:mfa"])).toBe(false);
  });
});
