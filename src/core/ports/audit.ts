import type { AuditRecord } from "../model.ts";

/** Ports of the audit trail: writing events, and counting refused sign-ins from it (the address limit). */

export interface AuditLog {
  record(event: AuditRecord): Promise<void>;
}

/** Counts refused sign-ins from the audit trail, so every replica sees the same count. */
export interface SigninFailureCounter {
  /** Failed sign-ins from `ip` since `since` (refusals for the limit itself excluded), at most `cap`. */
  failuresFromIp(ip: string, since: Date, cap: number): Promise<number>;
  /**
   * The time of the `n`-th most recent counted failure from `ip` since `since` (null: fewer): the
   * limit lifts when that one leaves the window.
   */
  nthRecentFailureFromIp(ip: string, since: Date, n: number): Promise<Date | null>;
}
