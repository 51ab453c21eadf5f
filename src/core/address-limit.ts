import type { Clock } from "./clock.ts";
import { DomainError, isCallerFault, isDomainError } from "./errors.ts";
import type { AuditRecord, ClientInfo } from "./model.ts";
import type { SigninFailureCounter } from "./ports/audit.ts";

/**
 * The per-address limit of the unauthenticated RPCs (sign-in, VerifyMfa, refresh, sign-out with a
 * refresh token, nonces): after `max` failures that were the caller's fault within `windowSeconds`,
 * the address's failures answer `rate_limited` (429) until the oldest counted failure leaves the
 * window, with the time actually left (`retry_after_seconds`).
 *
 * - Only failures are limited; successes never wait on them (issue 18): many users share one
 *   address (NAT, an office, a carrier), so every attempt is evaluated at once, and one whose
 *   credential is valid succeeds. A failure is counted when it happens (`fail`); once the address
 *   has `max`, a failure answers the limit's refusal instead of its own error, so the address
 *   learns nothing more about what it sends and writes no audit row per attempt: 50 concurrent
 *   bad attempts against a limit of 30 are told at most 30 errors. Unguessable credentials stay
 *   unguessable (refresh tokens are 256 random bits, ID tokens are signed). Where the secret
 *   *can* be guessed (a 6-digit code: VerifyMfa), `admit(…, { strict: true })` reserves each
 *   attempt before it is evaluated — with `failures + in flight >= max` a new one waits for one
 *   in flight to finish (refused after `maxWaitMs`) — and refuses an address over its limit
 *   unheard, so at most `max` guesses are ever checked per window.
 * - Counted from the shared audit trail (so every replica agrees), read at most once per
 *   `syncMs` (5 s) per address; the sign-in's own read refreshes it for free (`observe`). Failures that
 *   leave no audit row (an unknown refresh token) count on this replica only.
 * - Refusals by the limit write nothing per request: they are tallied per address and written
 *   as one audit row per address per flush (`drainRefusals`, called by the service's upkeep).
 */
export interface AddressLimit {
  readonly max: number;
  readonly windowSeconds: number;
  /**
   * Starts an attempt from `ip`, an address's key (`limitKeyOf`; null: unknown address, never
   * limited). `strict`: the credential can be guessed, so the attempt is reserved first and an
   * address over its limit is refused before any evaluation.
   */
  admit(ip: string | null, rpc: string, options?: { strict?: boolean }): Promise<AddressAttempt>;
  /** The sign-in's read counted the address's failures: refresh the cached count. */
  observe(ip: string, failures: number): void;
  /** Refusals by the limit since the last drain, one entry per address. */
  drainRefusals(): RefusalTally[];
}

export interface AddressAttempt {
  /** Ends the attempt with its outcome: the error it failed with, or nothing for a success. */
  settle(error?: unknown, options?: { recorded?: boolean }): void;
  /**
   * Ends a failed attempt and returns what the caller answers: `error` itself, or — when it was
   * the caller's fault and the address is over its limit — the limit's refusal (tallied: the
   * caller writes no audit row for it).
   */
  fail(error: unknown, options?: { recorded?: boolean }): Promise<unknown>;
}

export interface RefusalTally {
  ip: string;
  count: number;
  first: Date;
  last: Date;
  rpcs: string[];
}

export interface AddressLimitOptions {
  max: number;
  windowSeconds: number;
  counter: SigninFailureCounter;
  clock: Clock;
  /** How long a count read from the audit trail is trusted (default 5000 ms). */
  syncMs?: number;
  /** How long an attempt waits for a reservation before it is refused (default 5000 ms). */
  maxWaitMs?: number;
  /** Addresses tracked at once; the idle ones are forgotten first (default 100,000). */
  maxAddresses?: number;
}

interface Entry {
  /** Counted failures in the window as of `syncedAt` (from the audit trail). */
  synced: number;
  syncedAt: number;
  /** Failures recorded in the audit trail by this replica since `syncedAt`. */
  recordedSince: number;
  /** Failures with no audit row: their times, newest last (at most `max`). */
  unrecorded: number[];
  inFlight: number;
  waiters: (() => void)[];
  /** Known: the limit lifts at this time (ms). */
  limitedUntil: number;
  syncing: Promise<void> | null;
}

/** The key `client` is limited under: its address's key (IPv6: its prefix), else its address. */
export function limitKeyOf(client: ClientInfo): string | null {
  return client.addressKey ?? client.ip;
}

/**
 * Audit types that count against the caller's address (the per-address limit), when their code is
 * the caller's fault (not an outage, not a refusal by the limit itself).
 */
export const ADDRESS_FAILURE_TYPES: readonly string[] = [
  "signin.failed",
  "mfa.verify_failed",
  "mfa.challenge_exhausted",
];

/**
 * The key an audit record counts under for the per-address limit, or null when it does not count
 * (a success, an outage, anything but ADDRESS_FAILURE_TYPES). Decided once, when the row is
 * written: the stored `address_key` is set on counted failures only, so counting an address's
 * failures is one index seek on (address_key, at) that never walks its successes.
 */
export function countedAddressKey(event: Pick<AuditRecord, "type" | "code" | "client">): string | null {
  if (!ADDRESS_FAILURE_TYPES.includes(event.type)) return null;
  if (event.code != null && !isCallerFault(event.code)) return null;
  return limitKeyOf(event.client);
}

/** The attempt of an address nobody counts (no address known, or no limit configured). */
export const UNLIMITED: AddressAttempt = { settle() {}, fail: async (error) => error };

export function createAddressLimit(options: AddressLimitOptions): AddressLimit {
  const { max, counter, clock } = options;
  const windowMs = options.windowSeconds * 1000;
  const syncMs = options.syncMs ?? 5000;
  const maxWaitMs = options.maxWaitMs ?? 5000;
  const maxAddresses = options.maxAddresses ?? 100_000;
  const entries = new Map<string, Entry>();
  const refusals = new Map<string, RefusalTally>();

  function entryOf(ip: string): Entry {
    let e = entries.get(ip);
    if (e === undefined) {
      if (entries.size >= maxAddresses) forgetIdle();
      e = {
        synced: 0,
        syncedAt: -Infinity,
        recordedSince: 0,
        unrecorded: [],
        inFlight: 0,
        waiters: [],
        limitedUntil: 0,
        syncing: null,
      };
      entries.set(ip, e);
    }
    return e;
  }

  /** Forgets the oldest idle addresses (their counts are read again when they come back). */
  function forgetIdle(): void {
    let drop = Math.ceil(maxAddresses / 10);
    for (const [ip, e] of entries) {
      if (drop <= 0) break;
      if (e.inFlight === 0 && e.waiters.length === 0 && e.syncing === null) {
        entries.delete(ip);
        drop--;
      }
    }
  }

  function failures(e: Entry, now: number): number {
    while (e.unrecorded.length > 0 && e.unrecorded[0]! <= now - windowMs) e.unrecorded.shift();
    return e.synced + e.recordedSince + e.unrecorded.length;
  }

  async function sync(ip: string, e: Entry): Promise<void> {
    if (e.syncing !== null) return e.syncing;
    e.syncing = (async () => {
      const now = clock.now().getTime();
      try {
        const n = await counter.failuresFromIp(ip, new Date(now - windowMs), max);
        e.synced = n;
        e.syncedAt = now;
        e.recordedSince = 0;
      } finally {
        e.syncing = null;
      }
    })();
    return e.syncing;
  }

  /** The refusal for `ip` (tallied for the aggregated audit row), saying when the limit lifts. */
  async function refusalFor(ip: string, e: Entry, rpc: string, now: number): Promise<DomainError> {
    if (e.limitedUntil <= now) {
      // When the (max)-th most recent failure leaves the window, fewer than max remain.
      const nth = await counter.nthRecentFailureFromIp(ip, new Date(now - windowMs), max).catch(() => null);
      const local = e.unrecorded.length >= max ? e.unrecorded[e.unrecorded.length - max]! : 0;
      const from = Math.max(nth?.getTime() ?? 0, local);
      e.limitedUntil = from > 0 ? from + windowMs : now + windowMs;
    }
    const tally = refusals.get(ip);
    const at = clock.now();
    if (tally === undefined) refusals.set(ip, { ip, count: 1, first: at, last: at, rpcs: [rpc] });
    else {
      tally.count++;
      tally.last = at;
      if (!tally.rpcs.includes(rpc)) tally.rpcs.push(rpc);
    }
    return rateLimited(Math.max(1, Math.ceil((e.limitedUntil - now) / 1000)));
  }

  async function admit(ip: string | null, rpc: string, admitOptions?: { strict?: boolean }): Promise<AddressAttempt> {
    if (ip === null) return UNLIMITED;
    const e = entryOf(ip);
    const started = clock.now().getTime();
    for (;;) {
      const now = clock.now().getTime();
      if (now - e.syncedAt > syncMs) await sync(ip, e);
      // Not strict: admitted at once; whether a failure is told its error or the limit's refusal
      // is decided when it fails (`fail`), so nothing here waits on anybody's failures.
      if (admitOptions?.strict !== true) break;
      const n = failures(e, now);
      if (n >= max) throw await refusalFor(ip, e, rpc, now);
      // Every attempt in flight may still be a wrong guess: reserve room for it.
      if (n + e.inFlight < max) break;
      if (now - started >= maxWaitMs) throw await refusalFor(ip, e, rpc, now);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(
          () => {
            const i = e.waiters.indexOf(wake);
            if (i >= 0) e.waiters.splice(i, 1);
            resolve();
          },
          Math.max(1, maxWaitMs - (now - started)),
        );
        const wake = () => {
          clearTimeout(timer);
          resolve();
        };
        e.waiters.push(wake);
      });
    }
    e.inFlight++;
    let settled = false;
    const settle = (error?: unknown, settleOptions?: { recorded?: boolean }) => {
      if (settled) return;
      settled = true;
      e.inFlight--;
      if (error !== undefined && isDomainError(error) && isCallerFault(error.code)) {
        if (settleOptions?.recorded === false) {
          e.unrecorded.push(clock.now().getTime());
          if (e.unrecorded.length > max) e.unrecorded.shift();
        } else {
          e.recordedSince++;
        }
      }
      e.waiters.shift()?.();
    };
    return {
      settle,
      async fail(error, settleOptions) {
        if (settled) return error;
        const now = clock.now().getTime();
        const callerFault = isDomainError(error) && isCallerFault(error.code);
        if (!callerFault || failures(e, now) < max) {
          settle(error, settleOptions);
          return error;
        }
        // Over the limit: not counted again (the limit's refusals do not extend it), answered as the limit.
        settle();
        return refusalFor(ip, e, rpc, now);
      },
    };
  }

  return {
    max,
    windowSeconds: options.windowSeconds,
    admit,
    observe(ip, n) {
      const e = entries.get(ip);
      if (e === undefined) return;
      e.synced = n;
      e.syncedAt = clock.now().getTime();
      e.recordedSince = 0;
    },
    drainRefusals() {
      const out = [...refusals.values()];
      refusals.clear();
      return out;
    },
  };
}

function rateLimited(retryAfterSeconds: number, what = "too many failed attempts from this address"): DomainError {
  return new DomainError("rate_limited", `${what}; try again in ${retryAfterSeconds} s`, {
    detail: { retry_after_seconds: String(retryAfterSeconds) },
  });
}

/**
 * A budget of `max` failures per sliding window is exhausted: the refusal says when it lifts,
 * which is when the `max`-th most recent failure (`nth`) leaves the window.
 */
export function budgetExhausted(nth: Date | null, windowSeconds: number, now: Date, what: string): DomainError {
  const until = (nth?.getTime() ?? now.getTime()) + windowSeconds * 1000;
  // Never more than the window: a concurrent request may have recorded its failure after `now`.
  return rateLimited(Math.min(windowSeconds, Math.max(1, Math.ceil((until - now.getTime()) / 1000))), what);
}
