import type { AddressLimit } from "../core/address-limit.ts";
import type { Clock } from "../core/clock.ts";
import type { AuditLog } from "../core/ports/audit.ts";
import type { Logger } from "../logger.ts";

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** The stores the hourly purge deletes from, each call returning how many rows it removed. */
export interface Purgers {
  challenges: { purgeExpiredChallenges(before: Date): Promise<number> };
  sessions: { purgeExpiredSessions(before: Date): Promise<number> };
  trustedDevices: { purgeExpired(before: Date): Promise<number> };
  audit: { purgeExpiredUses(before: Date): Promise<number>; purgeAuditBefore(before: Date): Promise<number> };
}

/**
 * The address limit's tallied refusals, written as one audit row per address (with a count)
 * rather than a row per refused request: a flood costs a row per interval, not per request.
 */
export function createRefusalFlusher(deps: {
  addressLimit: AddressLimit | undefined;
  audit: AuditLog;
  logger: Logger;
}): () => Promise<void> {
  return async () => {
    for (const t of deps.addressLimit?.drainRefusals() ?? []) {
      await deps.audit
        .record({
          type: "address.rate_limited",
          code: "rate_limited",
          at: t.last,
          client: { ip: t.ip, userAgent: null, requestId: null, deviceId: null },
          detail: { count: t.count, first_at: t.first.toISOString(), last_at: t.last.toISOString(), rpcs: t.rpcs },
        })
        .catch((e: unknown) => deps.logger.error("audit write failed", { cause: String(e) }));
    }
  };
}

/**
 * The background jobs of a listening replica; returns the function that stops them. Every
 * minute: pick up signing keys rotated by other replicas or by command, rotate on schedule.
 * Hourly: delete challenges, sessions and trusted devices past their life (a day late, so that a just-expired
 * session still answers `session_expired`), spent single-use markers and audit rows older than
 * the retention (indexed deletes; any replica may run them). Every `refusalIntervalSeconds`:
 * write the address limit's refusals.
 */
export function startUpkeep(deps: {
  keyRing: { tick(): Promise<void> };
  purgers: Purgers;
  clock: Clock;
  logger: Logger;
  /** 0: audit rows are kept for ever. */
  auditRetentionDays: number;
  flushRefusals: () => Promise<void>;
  refusalIntervalSeconds: number;
}): () => void {
  const { purgers, clock, logger } = deps;
  let lastPurge = 0;
  const upkeep = setInterval(() => {
    deps.keyRing.tick().catch((e: unknown) => logger.warn("signing key upkeep failed", { cause: String(e) }));
    if (Date.now() - lastPurge < HOUR_MS) return;
    lastPurge = Date.now();
    const before = new Date(clock.now().getTime() - DAY_MS);
    const retentionDays = deps.auditRetentionDays;
    Promise.all([
      purgers.challenges.purgeExpiredChallenges(before),
      purgers.sessions.purgeExpiredSessions(before),
      purgers.trustedDevices.purgeExpired(clock.now()),
      purgers.audit.purgeExpiredUses(clock.now()),
      retentionDays === 0
        ? 0
        : purgers.audit.purgeAuditBefore(new Date(clock.now().getTime() - retentionDays * DAY_MS)),
    ]).then(
      ([challenges, sessions, trustedDevices, usedTokens, auditRows]) => {
        if (challenges + sessions + trustedDevices + usedTokens + auditRows > 0) {
          logger.info("purged expired rows", {
            challenges,
            sessions,
            trusted_devices: trustedDevices,
            used_id_tokens: usedTokens,
            audit_events: auditRows,
          });
        }
      },
      (e: unknown) => logger.warn("purge failed", { cause: String(e) }),
    );
  }, MINUTE_MS);
  upkeep.unref();
  const refusalFlush = setInterval(() => void deps.flushRefusals(), deps.refusalIntervalSeconds * 1000);
  refusalFlush.unref();
  return () => {
    clearInterval(upkeep);
    clearInterval(refusalFlush);
  };
}
