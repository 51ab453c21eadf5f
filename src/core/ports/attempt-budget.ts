import type { ClientInfo } from "../model.ts";

/**
 * A per-user budget of wrong guesses (second-factor codes, current passwords), counted from the
 * audit trail so every replica sees the same count. An attempt is *reserved* before its guess is
 * checked: the reservation is a failure record written ahead (code `attempt_reserved`) under a
 * per-user lock, so concurrent guesses, on one replica or many, see each other's reservations and
 * at most `max` are ever checked in a window. The outcome then settles the reservation.
 */
export type BudgetName =
  /** Wrong TOTP or recovery codes: challenges (VerifyMfa) and MfaService calls together. */
  | "second_factor_code"
  /** Wrong current passwords of ChangePassword. */
  | "current_password";

export type Reservation =
  | { kind: "reserved"; id: string }
  /** `max` failures (and reservations) in the window: `nth` is the `max`-th most recent one's time. */
  | { kind: "exhausted"; nth: Date | null };

export interface AttemptBudgetStore {
  /**
   * In one transaction, under a lock on the user's row: counts the user's failures of `budget`
   * since `since` (reservations included); below `max`, writes a reservation (a failure record
   * with code `attempt_reserved` and `detail`) and returns its id.
   */
  reserve(
    budget: BudgetName,
    request: {
      userId: string;
      since: Date;
      max: number;
      now: Date;
      client: ClientInfo;
      detail?: Record<string, unknown> | undefined;
    },
  ): Promise<Reservation>;
  /** The guess was wrong: the reservation becomes the failure record with `code`. */
  fail(id: string, code: string): Promise<void>;
  /** The guess was right (or never checked): the reservation is removed, it was not a failure. */
  release(id: string): Promise<void>;
}
