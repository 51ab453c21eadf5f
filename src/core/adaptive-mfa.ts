import type { BlockList } from "node:net";
import { addressListOf, isListed } from "./address-list.ts";
import { isFresh, samePlace } from "./last-seen.ts";
import type { ClientInfo, ExternalIdentity, RiskSummary } from "./model.ts";
import type {
  GeoLocator,
  SeenContext,
  SigninHistory,
  SigninHistoryQuery,
  SigninHistoryReader,
} from "./ports/risk-history.ts";
import {
  assessRisk,
  decideMfa,
  type MfaDecision,
  type MfaPolicy,
  type RiskAssessment,
  type RiskConfig,
  type RiskObservation,
} from "./risk.ts";
import { type DeviceKey, deviceKeyOf, networkOf } from "./signin-context.ts";

export interface AdaptiveMfaDeps {
  history: SigninHistoryReader;
  /** Null without a GeoIP database: no country or travel signals. */
  geo: GeoLocator | null;
  risk: RiskConfig;
  policy: MfaPolicy;
  /** CIDRs (or single addresses) whose sign-ins are less (allow) or more (deny) risky. */
  ipAllowlist: readonly string[];
  ipDenylist: readonly string[];
  /** The prefix lengths that make a "network" for `new_network`. */
  networkPrefix: { ipv4: number; ipv6: number };
  /** How far back attributed failures count for `recent_failures`, in seconds. */
  recentFailuresWindowSeconds: number;
}

/** The risk assessment of one sign-in attempt and what it means for this sign-in. */
export interface SigninGate {
  assessment: RiskAssessment;
  decision: MfaDecision;
  /** How the device was recognised (null: it could not be). */
  device: DeviceKey | null;
  /** Whether the attempt presented this user's device credential, unexpired. */
  deviceTrusted: boolean;
  /** What to remember as seen when this sign-in completes. */
  seen: SeenContext;
  /** What the client is told. */
  summary: RiskSummary;
  /** What the audit record stores: signals, score and decision (no addresses, no identifiers). */
  auditDetail: Record<string, unknown>;
}

export interface AdaptiveMfa {
  /**
   * What to ask the store about a user's history for a sign-in from `client` at `now` that
   * presented the device credential with hash `trustedDevice` (null: none).
   */
  historyQuery(client: ClientInfo, now: Date, trustedDevice: string | null): SigninHistoryQuery;
  evaluate(input: SigninAttempt): Promise<SigninGate>;
}

/** One sign-in attempt, as risk assessment sees it. */
export interface SigninAttempt {
  identity: ExternalIdentity;
  /** Null for a sign-in that creates the user. */
  userId: string | null;
  account: "create" | "link" | "existing";
  client: ClientInfo;
  now: Date;
  /** The hash of the device credential the attempt presented (null: none). */
  trustedDevice: string | null;
  /**
   * The user's history for `historyQuery(client, now, trustedDevice)`, when the caller already read it (the
   * sign-in reads it with the account); otherwise it is read here.
   */
  history?: SigninHistory | undefined;
}

/**
 * Gathers what risk assessment needs (history from the store, GeoIP, address lists, the ID
 * token's upstream authentication) and decides whether this sign-in needs a second factor.
 */
export function createAdaptiveMfa(deps: AdaptiveMfaDeps): AdaptiveMfa {
  const allow = addressListOf(deps.ipAllowlist);
  const deny = addressListOf(deps.ipDenylist);

  // What a client is recognised by, worked out once per request (historyQuery, then evaluate).
  const seenOf = new WeakMap<ClientInfo, { device: DeviceKey | null; network: string | null }>();
  const recognise = (client: ClientInfo) => {
    let seen = seenOf.get(client);
    if (seen === undefined) {
      seen = { device: deviceKeyOf(client), network: networkOf(client.ip, deps.networkPrefix) };
      seenOf.set(client, seen);
    }
    return seen;
  };
  const historyQuery = (client: ClientInfo, now: Date, trustedDevice: string | null): SigninHistoryQuery => {
    const { device, network } = recognise(client);
    return {
      deviceKey: device?.key ?? null,
      network,
      failuresSince: new Date(now.getTime() - deps.recentFailuresWindowSeconds * 1000),
      trustedDevice,
    };
  };

  return {
    historyQuery,
    async evaluate({ identity, userId, account, client, now, trustedDevice, history: known }) {
      const { device, network } = recognise(client);
      const geo = client.ip === null || deps.geo === null ? null : deps.geo.locate(client.ip);
      const history =
        userId === null
          ? null
          : (known ?? (await deps.history.signinHistory(userId, historyQuery(client, now, trustedDevice))));
      // Trust is the credential VerifyMfa issued, found for this user and unexpired; a device id
      // or User-Agent (anything a client can copy or guess) only says "seen before".
      const trusted = history?.trustedDevice ?? null;
      const deviceTrusted = trusted !== null && trusted.expiresAt > now;

      const observation: RiskObservation = {
        now,
        account,
        hasHistory: history?.hasHistory ?? false,
        device: { key: device?.key ?? null, known: history?.deviceKnown ?? false },
        network: { value: network, known: history?.networkKnown ?? false },
        geo,
        knownCountries: history?.countries ?? [],
        lastLocation: history?.lastLocation ?? null,
        ipList: allowOrDenyOf(client.ip, allow, deny),
        recentFailures: history?.recentFailures ?? 0,
        lastSigninAt: history?.lastSigninAt ?? null,
        upstreamMfa:
          (identity.provider.trustUpstreamMfa ?? false) &&
          upstreamDidMfa(identity, identity.provider.mfaAcrValues ?? []),
      };
      const assessment = assessRisk(observation, deps.risk);
      const decision = decideMfa(
        assessment,
        { userId, deviceTrusted, methods: history?.methods ?? [], account },
        deps.policy,
      );
      const recommended = [...deps.policy.recommendedMethods[assessment.level]];
      const reason = decision.kind === "allow" ? null : decision.reason;
      return {
        assessment,
        decision,
        device,
        deviceTrusted,
        seen: {
          deviceKey: device?.key ?? null,
          network,
          geo,
          trustedDeviceId: deviceTrusted ? trusted!.id : null,
          fresh: {
            device: history?.deviceKnown === true && isFresh(history.deviceSeenAt, now),
            network:
              history?.networkKnown === true &&
              history.networkSeen != null &&
              isFresh(history.networkSeen.at, now) &&
              samePlace(history.networkSeen, geo),
          },
        },
        summary: {
          score: assessment.score,
          level: assessment.level,
          requireMfa: decision.requireMfa,
          recommendedMethods: recommended,
          signals: assessment.signals.map((s) => s.code),
          reason,
        },
        auditDetail: {
          score: assessment.score,
          level: assessment.level,
          signals: assessment.signals.map((s) => ({ code: s.code, weight: s.weight, ...s.detail })),
          decision: decision.kind,
          require_mfa: decision.requireMfa,
          ...(reason === null ? {} : { reason }),
          ...(decision.kind === "allow" && decision.skipped !== null ? { skipped_by: decision.skipped } : {}),
          ...(decision.kind === "challenge" ? { methods: decision.methods } : {}),
          device: device === null ? "none" : device.trustable ? "id" : "user_agent",
          trusted_device: deviceTrusted,
          ...(geo?.country == null ? {} : { country: geo.country }),
        },
      };
    },
  };
}

// RFC 8176 method values by factor category: two categories, or an explicit `mfa`, mean MFA.
const KNOWLEDGE = new Set(["pwd", "pin", "kba"]);
const POSSESSION = new Set(["otp", "hwk", "swk", "sms", "tel", "sc", "pop"]);
const INHERENCE = new Set(["fpt", "face", "iris", "retina", "vbm"]);

/**
 * Whether the ID token says the provider itself did multi-factor authentication: `amr` holds
 * `mfa`, or methods of two factor categories (e.g. `pwd` + `otp`), or `acr` is one the provider
 * is configured to use for MFA. Only believed for providers configured with trust_upstream_mfa.
 */
export function upstreamDidMfa(
  identity: Pick<ExternalIdentity, "amr" | "acr">,
  mfaAcrValues: readonly string[],
): boolean {
  if (identity.amr.includes("mfa")) return true;
  if (identity.acr !== null && mfaAcrValues.includes(identity.acr)) return true;
  const categories = [KNOWLEDGE, POSSESSION, INHERENCE].filter((set) => identity.amr.some((m) => set.has(m)));
  return categories.length >= 2;
}

/** Whether the address is on the denylist (first) or the allowlist; null when on neither or unknown. */
function allowOrDenyOf(ip: string | null, allow: BlockList, deny: BlockList): "allow" | "deny" | null {
  if (ip === null) return null;
  if (isListed(deny, ip)) return "deny";
  return isListed(allow, ip) ? "allow" : null;
}
