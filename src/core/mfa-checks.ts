import { budgetExhausted } from "./address-limit.ts";
import { DomainError, isDomainError } from "./errors.ts";
import type { ClientInfo, Principal } from "./model.ts";
import type { MfaServiceDeps } from "./mfa.ts";
import { boundedResponse, ceremonyHash } from "./passkeys.ts";
import type { PasskeyRecord } from "./ports/webauthn.ts";
import type { MfaMethod } from "./risk.ts";
import { requireStepUp } from "./step-up.ts";

/** The checks every second-factor flow shares: methods, the per-user budget of guesses, passkey answers, step-up. */

export const METHODS: readonly MfaMethod[] = ["totp", "recovery_code", "webauthn"];
/**
 * What each method adds to the session's `amr` (RFC 8176: `otp`; `pop`, proof of possession of a
 * key, for a passkey, synced or not; recovery codes have no value there).
 */
export const AMR_OF: Record<MfaMethod, string> = { totp: "otp", recovery_code: "recovery_code", webauthn: "pop" };

/** The method named, or `mfa_method_not_available` listing the ones there are. */
export function methodOf(method: string): MfaMethod {
  if (!(METHODS as readonly string[]).includes(method)) {
    throw new DomainError("mfa_method_not_available", `method must be one of: ${METHODS.join(", ")}`);
  }
  return method as MfaMethod;
}

/** A passkey assertion checked before the challenge's transaction (its crypto is asynchronous). */
export type AssertionCheck =
  | {
      ok: true;
      passkey: PasskeyRecord;
      ceremonyId: string;
      mfaChallengeId: string | null;
      signCount: number;
      backedUp: boolean;
    }
  | { ok: false; error: DomainError };

/** A verdict of `guess` that counts against the budget with its own error (a refused passkey answer). */
export class Refused {
  readonly error: DomainError;
  constructor(error: DomainError) {
    this.error = error;
  }
}

export interface MfaChecks {
  /**
   * One guess at a code against the user's budget: reserved in the database first (so concurrent
   * guesses, here or on another replica, are counted before any is checked), then checked by
   * `check` (null: wrong), then settled: a wrong code stays recorded as `mfa.code_failed`, a
   * right one is released. Throws `rate_limited` when the budget is spent, `mfa_code_invalid`
   * when the code is wrong.
   */
  guess<T>(
    userId: string,
    client: ClientInfo,
    action: string,
    now: Date,
    check: () => Promise<T | null | Refused>,
  ): Promise<T>;
  /** Usable (unflagged) passkeys of the user; 0 when passkeys are not enabled. */
  usablePasskeys(userId: string): Promise<number>;
  /** The one step-up rule (step-up.ts), with the user's TOTP state already read. */
  stepUpRule(principal: Principal, totpConfirmed: boolean, now: Date): Promise<void>;
  /**
   * Checks a passkey assertion as far as it can be without the challenge's transaction: its
   * shape (malformed: thrown, nothing written), its ceremony, the credential it names, the
   * signature and the counter. A counter that did not move forward on a credential that keeps
   * one means a cloned authenticator may be at work: the credential is flagged (refused from then
   * on) and that is audited, whatever becomes of this answer.
   */
  checkAssertion(
    response: unknown,
    now: Date,
    client: ClientInfo,
    stepUpOf?: Principal | null,
  ): Promise<AssertionCheck>;
}

export function createMfaChecks(deps: MfaServiceDeps): MfaChecks {
  async function guess<T>(
    userId: string,
    client: ClientInfo,
    action: string,
    now: Date,
    check: () => Promise<T | null | Refused>,
  ): Promise<T> {
    const since = new Date(now.getTime() - deps.codeFailureWindowSeconds * 1000);
    const reservation = await deps.budget.reserve("second_factor_code", {
      userId,
      since,
      max: deps.maxCodeFailures,
      now,
      client,
      detail: { action },
    });
    if (reservation.kind === "exhausted") {
      throw budgetExhausted(reservation.nth, deps.codeFailureWindowSeconds, now, "too many wrong codes");
    }
    let result: T | null | Refused;
    try {
      result = await check();
    } catch (e) {
      // Not a wrong code (an outage, a race lost): not a failure of the user's.
      await deps.budget.release(reservation.id).catch((e: unknown) => deps.onAuditFailure?.(e));
      throw e;
    }
    if (result === null) {
      await deps.budget.fail(reservation.id, "mfa_code_invalid").catch((e: unknown) => deps.onAuditFailure?.(e));
      throw new DomainError("mfa_code_invalid", "the code is not valid (wrong, expired or already used)");
    }
    if (result instanceof Refused) {
      // A refused passkey answer counts like a wrong code, under its own code.
      await deps.budget.fail(reservation.id, result.error.code).catch((e: unknown) => deps.onAuditFailure?.(e));
      throw result.error;
    }
    await deps.budget.release(reservation.id).catch((e: unknown) => deps.onAuditFailure?.(e));
    return result;
  }

  async function usablePasskeys(userId: string): Promise<number> {
    const listed = (await deps.passkeys?.store.listPasskeys(userId)) ?? [];
    return listed.filter((p) => p.flaggedAt === null).length;
  }

  function stepUpRule(principal: Principal, totpConfirmed: boolean, now: Date): Promise<void> {
    return requireStepUp(
      principal,
      async () => ({ totp: totpConfirmed, passkeys: await usablePasskeys(principal.userId) }),
      deps.stepUpMaxAgeSeconds,
      now,
    );
  }

  async function checkAssertion(
    response: unknown,
    now: Date,
    client: ClientInfo,
    stepUpOf: Principal | null = null,
  ): Promise<AssertionCheck> {
    const pk = deps.passkeys!;
    const { challenge, credentialId } = pk.ceremonies.read(boundedResponse(response), "authentication");
    const refuse = (code: ConstructorParameters<typeof DomainError>[0], message: string): AssertionCheck => ({
      ok: false,
      error: new DomainError(code, message),
    });
    const ceremony = await pk.store.findCeremony(ceremonyHash(challenge));
    if (
      ceremony === null ||
      ceremony.purpose !== (stepUpOf === null ? "authentication" : "step_up") ||
      ceremony.consumedAt !== null ||
      ceremony.expiresAt <= now
    ) {
      return refuse(
        "webauthn_challenge_invalid",
        "this passkey challenge is unknown, expired or already used; start again",
      );
    }
    // A step-up ceremony marks only the session that opened it.
    if (stepUpOf !== null && (ceremony.userId !== stepUpOf.userId || ceremony.sessionId !== stepUpOf.sessionId)) {
      return refuse("webauthn_challenge_invalid", "this passkey challenge was opened by another session; start again");
    }
    const passkey = await pk.store.findPasskeyByCredentialId(credentialId);
    if (passkey === null || passkey.userId !== ceremony.userId) {
      return refuse("webauthn_credential_unknown", "this passkey is not one of this account's");
    }
    if (passkey.flaggedAt !== null) {
      return refuse(
        "webauthn_counter_regressed",
        "this passkey was disabled after its signature counter went backwards; remove it and register it again",
      );
    }
    let verified;
    try {
      verified = await pk.ceremonies.verifyAuthentication({ rp: pk.rp(), response, challenge, credential: passkey });
    } catch (e) {
      if (isDomainError(e)) return { ok: false, error: e };
      throw e;
    }
    if ((verified.signCount > 0 || passkey.signCount > 0) && verified.signCount <= passkey.signCount) {
      await pk.store.flagPasskey(passkey.id, now, {
        type: "mfa.passkey_flagged",
        at: now,
        code: "webauthn_counter_regressed",
        userId: passkey.userId,
        client,
        detail: { passkey_id: passkey.id, stored_count: passkey.signCount, presented_count: verified.signCount },
      });
      return refuse(
        "webauthn_counter_regressed",
        "this passkey's signature counter went backwards; it is disabled: remove it and register it again",
      );
    }
    return {
      ok: true,
      passkey,
      ceremonyId: ceremony.id,
      mfaChallengeId: ceremony.mfaChallengeId,
      signCount: verified.signCount,
      backedUp: verified.backedUp,
    };
  }

  return { guess, usablePasskeys, stepUpRule, checkAssertion };
}
