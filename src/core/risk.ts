/**
 * Risk assessment of a sign-in: a pure, deterministic function from what was observed about the
 * attempt (device, network, place, history, upstream authentication) to a score, a level and the
 * reasons, and from those to the MFA decision. No I/O and no clock of its own: the caller gathers
 * the observation (adaptive-mfa.ts) and passes `now` in it, so every outcome can be replayed from
 * the audit record, which stores the signals, the score and the decision.
 *
 * Anchors: Auth0 Adaptive MFA (NewDevice, ImpossibleTravel, UntrustedIP, low/medium/high) and
 * Logto's adaptive rules (new country, geo-velocity, long inactivity, untrusted IP).
 */

export type RiskLevel = "low" | "medium" | "high";

/** Every signal, in the order that breaks ties between equally weighted ones. */
export const SIGNAL_CODES = [
  "ip_denylisted",
  "impossible_travel",
  "new_device",
  "new_country",
  "new_identity_link",
  "recent_failures",
  "new_network",
  "long_inactivity",
  "ip_allowlisted",
  "upstream_mfa",
] as const;

export type SignalCode = (typeof SIGNAL_CODES)[number];

/** One reason the score moved, with the points it added (negative: it lowered the risk). */
export interface RiskSignal {
  code: SignalCode;
  weight: number;
  /** Non-personal facts behind it (no addresses), e.g. `{ country: "DE" }`. */
  detail?: Record<string, string | number> | undefined;
}

export interface RiskAssessment {
  /** 0 (no risk) to 100. */
  score: number;
  level: RiskLevel;
  /** Strongest first. */
  signals: RiskSignal[];
  /** The strongest signal that raised the score, or null when none did. */
  reason: SignalCode | null;
}

export interface RiskConfig {
  /** Points per signal; negative weights lower the score. */
  weights: Readonly<Record<SignalCode, number>>;
  /** A score at or above `medium` is medium, at or above `high` is high. */
  thresholds: { medium: number; high: number };
  /** This many attributed failures inside the gatherer's window raise `recent_failures`. */
  recentFailuresThreshold: number;
  /** No completed sign-in for this many days raises `long_inactivity`. */
  longInactivityDays: number;
  /** Faster than this between the last sign-in's place and this one is impossible travel... */
  maxTravelSpeedKmh: number;
  /** ...unless the places are closer than this (GeoIP is coarse; nearby cities jitter). */
  minTravelDistanceKm: number;
  /**
   * A sign-in that links a new identity to an existing account by verified e-mail is at least
   * this level, whatever its score (default `medium`: with the default policy, MFA is asked for).
   */
  emailLinkMinLevel?: RiskLevel | undefined;
}

export interface GeoPoint {
  /** ISO 3166-1 alpha-2, when known. */
  country: string | null;
  latitude: number | null;
  longitude: number | null;
}

/** What was observed about one sign-in attempt, gathered by the caller. */
export interface RiskObservation {
  now: Date;
  /** How the sign-in attaches to a user: a first sign-in creates one, `link` adds an identity. */
  account: "create" | "link" | "existing";
  /**
   * Whether the user has completed a sign-in before. Without history there is nothing to compare
   * with: a brand-new account's device, network and country are not "new" in any useful sense.
   */
  hasHistory: boolean;
  /** The device key (see deviceKeyOf) is null when the client sent nothing to recognise it by. */
  device: { key: string | null; known: boolean };
  network: { value: string | null; known: boolean };
  /** Where GeoIP places the client; null without a GeoIP database or for unknown addresses. */
  geo: GeoPoint | null;
  /** Countries of the user's earlier completed sign-ins (empty when GeoIP never knew them). */
  knownCountries: readonly string[];
  /** Place and time of the user's last completed sign-in that GeoIP could place. */
  lastLocation: { at: Date; latitude: number; longitude: number } | null;
  /** Whether the client address is on the configured deny or allow list (deny wins). */
  ipList: "deny" | "allow" | null;
  /** Failures attributed to this user recently (sign-in refusals, wrong or exhausted MFA). */
  recentFailures: number;
  lastSigninAt: Date | null;
  /** The provider is trusted for upstream MFA and its ID token says MFA happened there. */
  upstreamMfa: boolean;
}

const DAY_MS = 86_400_000;

/** The assessment of one observation; the same observation always gives the same result. */
export function assessRisk(obs: RiskObservation, config: RiskConfig): RiskAssessment {
  const raised: RiskSignal[] = [];
  const add = (code: SignalCode, detail?: Record<string, string | number>) => {
    raised.push({ code, weight: config.weights[code], ...(detail === undefined ? {} : { detail }) });
  };

  if (obs.ipList === "deny") add("ip_denylisted");
  if (obs.ipList === "allow") add("ip_allowlisted");
  if (obs.hasHistory) {
    if (!obs.device.known) add("new_device", obs.device.key === null ? { identified: "no" } : undefined);
    if (obs.network.value !== null && !obs.network.known) add("new_network");
    const country = obs.geo?.country ?? null;
    if (country !== null && obs.knownCountries.length > 0 && !obs.knownCountries.includes(country)) {
      add("new_country", { country });
    }
    const travel = travelBetween(obs.lastLocation, obs.geo, obs.now);
    if (
      travel !== null &&
      travel.distanceKm >= config.minTravelDistanceKm &&
      travel.speedKmh > config.maxTravelSpeedKmh
    ) {
      add("impossible_travel", {
        distance_km: Math.round(travel.distanceKm),
        minutes: Math.round(travel.hours * 60),
        speed_kmh: Number.isFinite(travel.speedKmh) ? Math.round(travel.speedKmh) : -1,
      });
    }
  }
  if (obs.recentFailures >= config.recentFailuresThreshold && obs.recentFailures > 0) {
    add("recent_failures", { count: obs.recentFailures });
  }
  if (obs.lastSigninAt !== null) {
    const days = Math.floor((obs.now.getTime() - obs.lastSigninAt.getTime()) / DAY_MS);
    if (days >= config.longInactivityDays) add("long_inactivity", { days });
  }
  if (obs.account === "link") add("new_identity_link");
  if (obs.upstreamMfa) add("upstream_mfa");

  const signals = raised
    .filter((s) => s.weight !== 0)
    .sort((a, b) => b.weight - a.weight || SIGNAL_CODES.indexOf(a.code) - SIGNAL_CODES.indexOf(b.code));
  const sum = signals.reduce((total, s) => total + s.weight, 0);
  const score = Math.max(0, Math.min(100, Math.round(sum)));
  const strongest = signals[0];
  const scored = levelOf(score, config.thresholds);
  const floor = obs.account === "link" ? (config.emailLinkMinLevel ?? "medium") : "low";
  return {
    score,
    level: atLeast(scored, floor) ? scored : floor,
    signals,
    reason:
      strongest !== undefined && strongest.weight > 0
        ? strongest.code
        : obs.account === "link"
          ? "new_identity_link"
          : null,
  };
}

function levelOf(score: number, thresholds: { medium: number; high: number }): RiskLevel {
  if (score >= thresholds.high) return "high";
  if (score >= thresholds.medium) return "medium";
  return "low";
}

const RANK: Record<RiskLevel, number> = { low: 0, medium: 1, high: 2 };

/** True when `level` is `floor` or above. */
function atLeast(level: RiskLevel, floor: RiskLevel): boolean {
  return RANK[level] >= RANK[floor];
}

/** The second factors a user can complete a challenge with. */
export type MfaMethod = "totp" | "recovery_code" | "webauthn";

export interface MfaPolicy {
  /** The lowest level that requires MFA; `never` turns adaptive MFA off (risk is still assessed). */
  requireAt: RiskLevel | "never";
  /** Users (ids) who must do MFA on every sign-in, whatever the risk, trusted device or not. */
  alwaysForUsers: readonly string[];
  /** On a trusted device, MFA is skipped up to this level; `none`: trust never skips it. */
  trustedDeviceMaxLevel: RiskLevel | "none";
  /**
   * When MFA is called for and the user has no factor: `allow` lets them in with the
   * `mfa_enrollment_required` signal, `deny` refuses with that code, `deny_high_risk` refuses
   * only at high risk and allows (with the signal) below.
   */
  noFactor: "allow" | "deny" | "deny_high_risk";
  /** MFA methods recommended at each level (the login response's `recommended_mfa_methods`). */
  recommendedMethods: Readonly<Record<RiskLevel, readonly MfaMethod[]>>;
  /**
   * At high risk only these methods complete a challenge (say `webauthn`: phishing-resistant
   * factors only); a user with none of them is treated as having no factor. Empty: any method.
   */
  highRiskMethods: readonly MfaMethod[];
}

export type MfaDecision =
  /** No MFA needed. `skipped` says what waived a requirement (a trusted device). */
  | { kind: "allow"; requireMfa: false; skipped: "trusted_device" | null }
  /** MFA required and the user can do it: answer with a challenge instead of tokens. */
  | { kind: "challenge"; requireMfa: true; reason: string; methods: MfaMethod[] }
  /** MFA required, no factor, policy lets the user in and says so. */
  | { kind: "allow_unenrolled"; requireMfa: true; reason: string }
  /** MFA required, no factor, policy refuses (`mfa_enrollment_required`). */
  | { kind: "deny"; requireMfa: true; reason: string };

/**
 * The MFA decision for an assessment. `methods` are what the user has enrolled and can complete
 * a challenge with; `deviceTrusted` is a device the user marked trusted after a completed MFA.
 */
export function decideMfa(
  assessment: RiskAssessment,
  subject: {
    userId: string | null;
    deviceTrusted: boolean;
    methods: readonly MfaMethod[];
    account?: RiskObservation["account"];
  },
  policy: MfaPolicy,
): MfaDecision {
  // Linking a new identity by e-mail to an account that has a second factor asks for that factor,
  // whatever the score, policy level or trusted device: the link is what the factor protects
  // (it is written only when the challenge completes).
  if (subject.account === "link" && subject.methods.length > 0) {
    return { kind: "challenge", requireMfa: true, reason: "new_identity_link", methods: [...subject.methods] };
  }
  const always = subject.userId !== null && policy.alwaysForUsers.includes(subject.userId);
  let reason: string | null = null;
  if (always) reason = "policy";
  else if (policy.requireAt !== "never" && atLeast(assessment.level, policy.requireAt)) {
    // Every level requires MFA (requireAt low) and nothing stood out: the policy is the reason.
    reason = assessment.reason ?? "policy";
  }
  if (reason === null) return { kind: "allow", requireMfa: false, skipped: null };
  if (
    !always &&
    subject.deviceTrusted &&
    policy.trustedDeviceMaxLevel !== "none" &&
    atLeast(policy.trustedDeviceMaxLevel, assessment.level)
  ) {
    return { kind: "allow", requireMfa: false, skipped: "trusted_device" };
  }
  const methods =
    assessment.level === "high" && policy.highRiskMethods.length > 0
      ? subject.methods.filter((m) => policy.highRiskMethods.includes(m))
      : [...subject.methods];
  if (methods.length > 0) return { kind: "challenge", requireMfa: true, reason, methods };
  const deny = policy.noFactor === "deny" || (policy.noFactor === "deny_high_risk" && assessment.level === "high");
  return deny ? { kind: "deny", requireMfa: true, reason } : { kind: "allow_unenrolled", requireMfa: true, reason };
}

/** Great-circle distance and the speed needed to cover it since `from.at`; null without both places. */
function travelBetween(
  from: { at: Date; latitude: number; longitude: number } | null,
  to: GeoPoint | null,
  now: Date,
): { distanceKm: number; hours: number; speedKmh: number } | null {
  if (from === null || to === null || to.latitude === null || to.longitude === null) return null;
  const distanceKm = haversineKm(from.latitude, from.longitude, to.latitude, to.longitude);
  const hours = Math.max(0, now.getTime() - from.at.getTime()) / 3_600_000;
  return { distanceKm, hours, speedKmh: hours === 0 ? Number.POSITIVE_INFINITY : distanceKm / hours };
}

export function haversineKm(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const rad = Math.PI / 180;
  const dLat = (lat2 - lat1) * rad;
  const dLon = (lon2 - lon1) * rad;
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371 * Math.asin(Math.min(1, Math.sqrt(a)));
}
