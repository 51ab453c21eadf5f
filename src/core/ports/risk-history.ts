import type { GeoPoint, MfaMethod } from "../risk.ts";

/** Ports of risk assessment: what a user's earlier sign-ins say, and where an address is. */

/** What the store knows about a user's earlier completed sign-ins, for one new attempt. */
export interface SigninHistory {
  lastSigninAt: Date | null;
  /** The user's row for the attempt's device key, when they completed a sign-in from it. */
  device: { trustedUntil: Date | null } | null;
  /** Whether any device, network or sign-in was ever recorded for the user. */
  hasHistory: boolean;
  /** Whether the attempt's network was seen before. */
  networkKnown: boolean;
  /** Countries of earlier completed sign-ins (distinct). */
  countries: string[];
  /** Place and time of the latest completed sign-in GeoIP could place. */
  lastLocation: { at: Date; latitude: number; longitude: number } | null;
  /** Failures attributed to the user since the asked time. */
  recentFailures: number;
  /** Methods the user can complete a challenge with (a confirmed TOTP; unused recovery codes). */
  methods: MfaMethod[];
}

export interface SigninHistoryReader {
  signinHistory(
    userId: string,
    query: { deviceKey: string | null; network: string | null; failuresSince: Date },
  ): Promise<SigninHistory>;
}

/** Where a completed sign-in came from, remembered for the next risk assessment. */
export interface SeenContext {
  deviceKey: string | null;
  network: string | null;
  geo: GeoPoint | null;
  /** Set when a completed MFA asked to trust this (identifiable) device until then. */
  trustedUntil?: Date | null | undefined;
}

/** Where GeoIP places an address; null when it does not know it. */
export interface GeoLocator {
  locate(ip: string): GeoPoint | null;
}
