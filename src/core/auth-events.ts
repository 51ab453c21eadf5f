import type { RiskSummary } from "./model.ts";

/**
 * What the sign-in and MFA services report as they decide, for metrics: the adapter (the
 * telemetry layer) counts; the core knows no metrics library. Calls are synchronous and must
 * not throw. Positional arguments, so reporting allocates nothing.
 */
export interface AuthEvents {
  /**
   * A sign-in ended. `provider`: the verified token's provider, else the one the request named
   * (unchecked: the adapter must bound it). `outcome`: `success`, `mfa_required` or the refusal's
   * error code. `risk`: the assessed level, when risk was assessed.
   */
  signin(provider: string | undefined, outcome: string, risk: RiskSummary["level"] | undefined): void;
  /** An MFA challenge was answered: `method` one of ours or `unknown`; `outcome` `success` or the refusal's code. */
  mfaVerification(method: string, outcome: string): void;
  /** A passkey registration finished: `outcome` `success` or the refusal's code. */
  passkeyRegistration(outcome: string): void;
}
