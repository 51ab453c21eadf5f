import type { GeoPoint, MfaMethod } from "../risk.ts";

/** Ports of risk assessment: what a user's earlier sign-ins say, and where an address is. */

/** What the store knows about a user's earlier completed sign-ins, for one new attempt. */
export interface SigninHistory {
  lastSigninAt: Date | null;
  /** Whether the user completed a sign-in from the attempt's device key (`new_device`). */
  deviceKnown: boolean;
  /**
   * When the attempt's device was last seen, where the store read it (absent: not read; the
   * sign-in then writes the sighting, core/last-seen.ts).
   */
  deviceSeenAt?: Date | null | undefined;
  /**
   * The user's trusted device whose credential the attempt presented (looked up by hash and user:
   * another user's credential finds nothing); null without one. Expiry is checked by the caller.
   */
  trustedDevice: { id: string; expiresAt: Date } | null;
  /** Whether any device, network or sign-in was ever recorded for the user. */
  hasHistory: boolean;
  /** Whether the attempt's network was seen before. */
  networkKnown: boolean;
  /** The attempt's network's last sighting and recorded place, where the store read it (as deviceSeenAt). */
  networkSeen?: ({ at: Date } & GeoPoint) | null | undefined;
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
  signinHistory(userId: string, query: SigninHistoryQuery): Promise<SigninHistory>;
}

/** What one sign-in attempt asks about the user's history. */
export interface SigninHistoryQuery {
  deviceKey: string | null;
  network: string | null;
  failuresSince: Date;
  /** The hash of the device credential the attempt presented (OpaqueTokens.hash); null: none. */
  trustedDevice: string | null;
}

/** Where a completed sign-in came from, remembered for the next risk assessment. */
export interface SeenContext {
  deviceKey: string | null;
  network: string | null;
  geo: GeoPoint | null;
  /** The trusted device whose credential let this sign-in skip MFA: its last use is recorded. */
  trustedDeviceId?: string | null | undefined;
  /**
   * What the write may leave out, decided from the sign-in's read (core/last-seen.ts): the device's
   * and the network's rows when each was seen within the resolution (the network at the same
   * place). Absent or false: written (as far as it is stale by then).
   */
  fresh?: { device: boolean; network: boolean } | undefined;
}

/** Where GeoIP places an address; null when it does not know it. */
export interface GeoLocator {
  locate(ip: string): GeoPoint | null;
}
