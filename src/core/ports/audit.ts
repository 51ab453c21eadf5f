import type { AuditRecord } from "../model.ts";

/** Ports of the audit trail: writing events, and counting an address's failures from it (the address limit). */

export interface AuditLog {
  record(event: AuditRecord): Promise<void>;
}

/** Counts an address's failures from the audit trail, so every replica sees the same count. */
export interface SigninFailureCounter {
  /** The caller's failures from `ip` since `since` (outages and the limit's own refusals excluded), at most `cap`. */
  failuresFromIp(ip: string, since: Date, cap: number): Promise<number>;
  /**
   * The time of the `n`-th most recent counted failure from `ip` since `since` (null: fewer): the
   * limit lifts when that one leaves the window.
   */
  nthRecentFailureFromIp(ip: string, since: Date, n: number): Promise<Date | null>;
}
