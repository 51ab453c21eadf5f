import { type AddressLimit, budgetExhausted, limitKeyOf, UNLIMITED } from "./address-limit.ts";
import type { Clock } from "./clock.ts";
import { DomainError, isDomainError } from "./errors.ts";
import { newId } from "./ids.ts";
import type { ClientInfo, LoginResult, Principal } from "./model.ts";
import type { ChallengeDecision, ChallengeState, MfaStore, RecoveryCodes, SecretBox, TotpEngine } from "./ports/mfa.ts";
import type { AttemptBudgetStore } from "./ports/attempt-budget.ts";
import type { AuditLog } from "./ports/audit.ts";
import type { OpaqueTokens } from "./ports/sessions.ts";
import type { AccessTokenIssuer } from "./ports/signing-keys.ts";
import { loginResultOf } from "./login-result.ts";
import type { PasswordExpiryPolicy } from "./password-policy.ts";
import { quietRecorder } from "./quiet-audit.ts";
import type { AuthEvents } from "./auth-events.ts";
import type { MfaMethod } from "./risk.ts";
import { assertActive } from "./user-status.ts";
import { boundedResponse, ceremonyHash } from "./passkeys.ts";
import { coarseUserAgent, deviceKeyOf } from "./signin-context.ts";
import { requireStepUp } from "./step-up.ts";
import type { JsonObject, PasskeyRecord, PasskeyStore, RelyingParty, WebauthnCeremonies } from "./ports/webauthn.ts";

/** What VerifyMfa needs to take passkeys (method `webauthn`). */
export interface MfaPasskeyDeps {
  store: PasskeyStore;
  ceremonies: WebauthnCeremonies;
  rp: () => RelyingParty;
  /** Life of a ceremony challenge, in seconds (never beyond the MFA challenge's own). */
  ceremonyTtlSeconds: number;
}

export interface MfaServiceDeps {
  /** The per-address limit of VerifyMfa (address-limit.ts). */
  addressLimit?: AddressLimit | undefined;
  clock: Clock;
  store: MfaStore;
  audit: AuditLog;
  totp: TotpEngine;
  secrets: SecretBox;
  recoveryCodes: RecoveryCodes;
  opaqueTokens: OpaqueTokens;
  accessTokens: AccessTokenIssuer;
  /** Absolute lifetime of the session a completed challenge opens, in seconds. */
  sessionTtlSeconds: number;
  /** Verification calls a challenge allows; the one that reaches it without success kills it. */
  maxAttempts: number;
  /** How long the device credential `trust_device` issues is valid, in days (0: never issued). */
  trustedDeviceDays: number;
  /** Recovery codes per set. */
  recoveryCodeCount: number;
  /**
   * Wrong second-factor codes allowed per user in `codeFailureWindowSeconds`, challenges and
   * MfaService calls together. Without a per-user budget, fresh challenges (each with its own
   * attempts) would allow unlimited online guessing of TOTP codes.
   */
  maxCodeFailures: number;
  codeFailureWindowSeconds: number;
  /** Where a guess at a code is reserved before it is checked (the budget above, atomically). */
  budget: AttemptBudgetStore;
  /**
   * Changing factors (enroll, confirm, disable, new recovery codes; passkeys.ts too) needs a
   * second factor completed on this session at most this long ago, in seconds; for an account
   * without a factor yet, a sign-in that recent (`mfa.step_up_max_age_seconds`; step-up.ts).
   */
  stepUpMaxAgeSeconds: number;
  passwordExpiry?: PasswordExpiryPolicy | undefined;
  onAuditFailure?: (error: unknown) => void;
  /** Told how every challenge answer ended (metrics). */
  events?: AuthEvents | undefined;
  /** Passkeys; without them method `webauthn` is not available. */
  passkeys?: MfaPasskeyDeps | undefined;
}

export interface VerifyMfaInput {
  challengeToken: string;
  method: string;
  code: string;
  /** For method `webauthn`: the AuthenticationResponseJSON. */
  assertion?: unknown;
  trustDevice: boolean;
  client: ClientInfo;
}

export interface MfaStatus {
  totpEnabled: boolean;
  totpPending: boolean;
  recoveryCodesLeft: number;
  passkeys: number;
}

export interface TotpEnrollment {
  secret: string;
  uri: string;
  digits: number;
  period: number;
  algorithm: string;
}

export interface StepUpResult {
  /** A new access token of the session, its `amr` with the factor's methods. */
  accessToken: string;
  expiresIn: number;
  /** Factor changes are allowed for this many seconds from now. */
  maxAgeSeconds: number;
}

export interface MfaService {
  /** Completes a sign-in that required MFA; see AuthService.VerifyMfa for the contract. */
  verify(input: VerifyMfaInput): Promise<LoginResult>;
  /**
   * Opens a passkey ceremony for an MFA challenge: the request options for
   * `navigator.credentials.get()`; see AuthService.BeginWebauthnMfa for the contract.
   */
  beginWebauthn(challengeToken: string, client: ClientInfo): Promise<JsonObject>;
  status(principal: Principal): Promise<MfaStatus>;
  enrollTotp(principal: Principal, client: ClientInfo): Promise<TotpEnrollment>;
  /** Activates the pending authenticator; resolves with the recovery codes (shown once). */
  confirmTotp(principal: Principal, code: string, client: ClientInfo): Promise<string[]>;
  disableTotp(principal: Principal, code: string, client: ClientInfo): Promise<void>;
  regenerateRecoveryCodes(principal: Principal, code: string, client: ClientInfo): Promise<string[]>;
  /**
   * Completes a second factor on the signed-in session (a TOTP or recovery code, or a passkey
   * answering beginStepUp): the session's
   * `mfa_at` becomes now, so factor changes are allowed for `stepUpMaxAgeSeconds`.
   */
  stepUp(principal: Principal, method: string, code: string, client: ClientInfo, assertion?: unknown): Promise<StepUpResult>;
  /**
   * Opens a passkey ceremony for a step-up of this session: the request options for
   * `navigator.credentials.get()`, answered with stepUp method `webauthn`.
   */
  beginStepUp(principal: Principal): Promise<JsonObject>;
}

const METHODS: readonly MfaMethod[] = ["totp", "recovery_code", "webauthn"];
/**
 * What each method adds to the session's `amr` (RFC 8176: `otp`; `pop`, proof of possession of a
 * key, for a passkey, synced or not; recovery codes have no value there).
 */
const AMR_OF: Record<MfaMethod, string> = { totp: "otp", recovery_code: "recovery_code", webauthn: "pop" };

/** A passkey assertion checked before the challenge's transaction (its crypto is asynchronous). */
type AssertionCheck =
  | { ok: true; passkey: PasskeyRecord; ceremonyId: string; mfaChallengeId: string | null; signCount: number; backedUp: boolean }
  | { ok: false; error: DomainError };
/** A verdict of `guess` that counts against the budget with its own error (a refused passkey answer). */
class Refused {
  readonly error: DomainError;
  constructor(error: DomainError) {
    this.error = error;
  }
}
const CHALLENGE_TOKEN = /^chg_[A-Za-z0-9_-]{43}$/;
/** Passkey ceremonies one MFA challenge may open (BeginWebauthnMfa calls). */
export const MAX_CEREMONIES_PER_CHALLENGE = 10;
/** Live step-up ceremonies one session may hold (BeginStepUp calls within the ceremony TTL). */
export const MAX_STEP_UPS_PER_SESSION = 10;

/**
 * Second factors: completing challenged sign-ins, and the user's TOTP authenticator and recovery
 * codes. Every verification, right or wrong, is audited; a challenge's attempts are counted in
 * the database, so retries on other replicas count too.
 */
export function createMfaService(deps: MfaServiceDeps): MfaService {
  const { clock, store, totp, secrets, recoveryCodes } = deps;

  const recordQuietly = quietRecorder(deps.audit, deps.onAuditFailure);

  function newRecoveryCodes(userId: string) {
    const codes = recoveryCodes.generate(deps.recoveryCodeCount);
    return { codes, rows: codes.map((c) => ({ id: newId("rcv"), codeHash: recoveryCodes.hash(userId, c) })) };
  }

  /**
   * Applies a change with a current code of the user's confirmed authenticator (a time step newer
   * than the last one used), after the step-up check. Throttled per user, because MfaService
   * callers hold only an access token: without a limit, a stolen one could guess codes.
   */
  async function withCurrentCode(
    principal: Principal,
    code: string,
    client: ClientInfo,
    action: string,
    apply: (factorId: string, step: number, now: Date) => Promise<boolean>,
  ): Promise<void> {
    const { userId } = principal;
    if (code.trim() === "") throw new DomainError("mfa_code_required", "code is required");
    const factor = await store.findTotp(userId);
    if (factor === null || factor.confirmedAt === null) {
      throw new DomainError("totp_not_enrolled", "no authenticator is enrolled");
    }
    const now = clock.now();
    await stepUpRule(principal, true, now);
    await guess(userId, client, action, now, async () => {
      const step = totp.match(secrets.open(factor.secretEnc, factor.id), code, now, factor.lastUsedStep);
      // Spent in the write itself: a step used meanwhile (a replay) is a wrong code too.
      return step !== null && (await apply(factor.id, step, now)) ? true : null;
    });
  }

  /**
   * One guess at a code against the user's budget: reserved in the database first (so concurrent
   * guesses, here or on another replica, are counted before any is checked), then checked by
   * `check` (null: wrong), then settled: a wrong code stays recorded as `mfa.code_failed`, a
   * right one is released. Throws `rate_limited` when the budget is spent, `mfa_code_invalid`
   * when the code is wrong.
   */
  async function guess<T>(
    userId: string,
    client: ClientInfo,
    action: string,
    now: Date,
    check: () => Promise<T | null | Refused>,
  ): Promise<T> {
    const since = new Date(now.getTime() - deps.codeFailureWindowSeconds * 1000);
    const reservation = await deps.budget.reserve("second_factor_code", {
      userId, since, max: deps.maxCodeFailures, now, client, detail: { action },
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

  /** Usable (unflagged) passkeys of the user; 0 when passkeys are not enabled. */
  async function usablePasskeys(userId: string): Promise<number> {
    const listed = (await deps.passkeys?.store.listPasskeys(userId)) ?? [];
    return listed.filter((p) => p.flaggedAt === null).length;
  }

  /** The one step-up rule (step-up.ts), with the user's TOTP state already read. */
  function stepUpRule(principal: Principal, totpConfirmed: boolean, now: Date): Promise<void> {
    return requireStepUp(
      principal,
      async () => ({ totp: totpConfirmed, passkeys: await usablePasskeys(principal.userId) }),
      deps.stepUpMaxAgeSeconds,
      now,
    );
  }

  /**
   * Checks a passkey assertion as far as it can be without the challenge's transaction: its
   * shape (malformed: thrown, nothing written), its ceremony, the credential it names, the
   * signature and the counter. A counter that did not move forward on a credential that keeps
   * one means a cloned authenticator may be at work: the credential is flagged (refused from then
   * on) and that is audited, whatever becomes of this answer.
   */
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
      return refuse("webauthn_challenge_invalid", "this passkey challenge is unknown, expired or already used; start again");
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
      return refuse("webauthn_counter_regressed", "this passkey was disabled after its signature counter went backwards; remove it and register it again");
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
      return refuse("webauthn_counter_regressed", "this passkey's signature counter went backwards; it is disabled: remove it and register it again");
    }
    return { ok: true, passkey, ceremonyId: ceremony.id, mfaChallengeId: ceremony.mfaChallengeId, signCount: verified.signCount, backedUp: verified.backedUp };
  }

  async function verifyOnce(input: VerifyMfaInput): Promise<LoginResult> {
    const { client } = input;
    if (input.challengeToken === "") throw new DomainError("challenge_token_required", "challenge_token is required");
    if (!(METHODS as readonly string[]).includes(input.method)) {
      throw new DomainError("mfa_method_not_available", `method must be one of: ${METHODS.join(", ")}`);
    }
    const method = input.method as MfaMethod;
    if (method === "webauthn") {
      if (deps.passkeys === undefined) throw new DomainError("mfa_method_not_available", "passkeys are not enabled");
      if (input.assertion === undefined || input.assertion === null) {
        throw new DomainError("mfa_code_required", "webauthn_assertion is required");
      }
    } else if (input.code.trim() === "") throw new DomainError("mfa_code_required", "code is required");
    const now = clock.now();
    if (!CHALLENGE_TOKEN.test(input.challengeToken)) {
      await recordQuietly({ type: "mfa.verify_failed", at: now, code: "challenge_invalid", client, detail: { method } });
      throw new DomainError("challenge_invalid", "the challenge token is not valid; sign in again");
    }
    // A malformed assertion is refused here, before anything is written; every other verdict on
    // it is the challenge's (an attempt counted, audited), decided in the transaction below.
    const assertion = method === "webauthn" ? await checkAssertion(input.assertion, now, client) : null;
    const refresh = deps.opaqueTokens.issue("rt");
    const sessionId = newId("ses");
    let failure: DomainError | undefined;
    let found: ChallengeState | null = null;
    let trusted: { token: string; hash: string } | null = null;

    const decide = (state: ChallengeState | null): ChallengeDecision => {
      found = state;
      const audit = (type: string, code: string | undefined, extra: Record<string, unknown> = {}) => ({
        type,
        at: now,
        code,
        userId: state?.challenge.userId,
        provider: state?.challenge.provider,
        client,
        detail: state === null ? { method } : { challenge_id: state.challenge.id, method, attempts: state.challenge.attempts, ...extra },
      });
      const reject = (error: DomainError, kill = false): ChallengeDecision => {
        failure = error;
        return { kind: "reject", kill, audit: audit(kill ? "mfa.challenge_exhausted" : "mfa.verify_failed", error.code) };
      };
      if (state === null) return reject(new DomainError("challenge_invalid", "the challenge token is not valid; sign in again"));
      const c = state.challenge;
      if (c.consumedReason === "completed") {
        return reject(new DomainError("challenge_invalid", "this challenge was already used; sign in again"));
      }
      if (c.consumedReason === "exhausted") {
        return reject(new DomainError("challenge_exhausted", "too many attempts for this challenge; sign in again"));
      }
      if (c.expiresAt <= now) return reject(new DomainError("challenge_expired", "the challenge has expired; sign in again"));
      // Bound to the device it was issued to, when that device identified itself (compared by
      // the hashed key: the raw device id is stored nowhere).
      if (c.deviceKey?.startsWith("id:") === true && deviceKeyOf(client)?.key !== c.deviceKey) {
        return reject(new DomainError("challenge_invalid", "this challenge was issued to another device; sign in again"));
      }
      // Bound to the door and client whose sign-in asked for it: the session it opens is theirs.
      if ((c.clientId ?? null) !== (client.oauthClientId ?? null)) {
        return reject(new DomainError("challenge_invalid", "this challenge was issued to another client; sign in again"));
      }
      try {
        assertActive(state.user, now);
      } catch (e) {
        if (isDomainError(e)) return reject(e);
        throw e;
      }
      if (state.recentCodeFailures >= deps.maxCodeFailures) {
        return reject(new DomainError("rate_limited", "too many wrong codes for this account; wait a few minutes and try again"));
      }

      let spend: Extract<ChallengeDecision, { kind: "complete" }>["spend"] | null = null;
      let refusal: DomainError | null = null;
      if (c.methods.includes(method)) {
        if (method === "webauthn" && assertion !== null) {
          if (!assertion.ok) refusal = assertion.error;
          else if (assertion.passkey.userId !== c.userId) {
            refusal = new DomainError("webauthn_credential_unknown", "this passkey is not one of this account's");
          } else if (assertion.mfaChallengeId !== c.id) {
            refusal = new DomainError("webauthn_challenge_invalid", "this passkey answer is for another sign-in; start again");
          } else {
            spend = { kind: "webauthn", passkeyId: assertion.passkey.id, ceremonyId: assertion.ceremonyId, signCount: assertion.signCount, backedUp: assertion.backedUp };
          }
        } else if (method === "totp" && state.totp !== null) {
          const f = state.totp;
          const step = totp.match(secrets.open(f.secretEnc, f.id), input.code, now, f.lastUsedStep);
          if (step !== null) spend = { kind: "totp", factorId: f.id, step };
        } else if (method === "recovery_code") {
          const hash = recoveryCodes.hash(c.userId, input.code);
          const match = state.recoveryCodes.find((r) => recoveryCodes.equal(r.codeHash, hash));
          if (match !== undefined) spend = { kind: "recovery_code", codeId: match.id };
        }
      }
      if (spend === null) {
        const left = deps.maxAttempts - c.attempts;
        if (left <= 0) {
          return reject(new DomainError("challenge_exhausted", "too many wrong codes; sign in again"), true);
        }
        if (refusal !== null) {
          return reject(new DomainError(refusal.code, refusal.message, { detail: { ...refusal.detail, attempts_left: String(left) } }));
        }
        return reject(
          c.methods.includes(method)
            ? new DomainError("mfa_code_invalid", "the code is not valid (wrong, expired or already used)", { detail: { attempts_left: String(left) } })
            : new DomainError("mfa_method_not_available", `this challenge can be completed with: ${c.methods.join(", ")}`, { detail: { attempts_left: String(left) } }),
        );
      }

      const amr = [...new Set([...c.amr, AMR_OF[method], "mfa"])];
      // Trust is a fresh credential (256 random bits) handed to this client once; only its hash
      // is stored, bound to the user. Nothing the client sent before (device id, User-Agent) is it.
      trusted = input.trustDevice && deps.trustedDeviceDays > 0 ? deps.opaqueTokens.issue("tdc") : null;
      const expiresAt = new Date(now.getTime() + deps.sessionTtlSeconds * 1000);
      return {
        kind: "complete",
        spend,
        session: {
          id: sessionId,
          userId: c.userId,
          provider: c.provider,
          amr,
          // Bound to the challenge's client (the same as the caller's, checked above).
          client: { ...client, oauthClientId: c.clientId ?? null },
          createdAt: now,
          expiresAt,
          mfaAt: now,
        },
        refreshToken: { id: newId("rtk"), sessionId, tokenHash: refresh.hash, createdAt: now, expiresAt },
        seen: { ...c.context, trustedDeviceId: null },
        trustDevice: trusted === null ? null : {
          id: newId("tdv"),
          userId: c.userId,
          credentialHash: trusted.hash,
          label: coarseUserAgent(client.userAgent),
          createdAt: now,
          expiresAt: new Date(now.getTime() + deps.trustedDeviceDays * 86_400_000),
        },
        audit: {
          ...audit("signin.succeeded", undefined, {
            account: c.pendingIdentity === null ? "existing" : "link",
            mfa: { method, challenge_id: c.id, ...(spend.kind === "webauthn" ? { passkey_id: spend.passkeyId } : {}) },
            risk: { score: c.risk.score, level: c.risk.level, reason: c.risk.reason },
            ...(input.trustDevice ? { trust_device: trusted === null ? "refused_disabled" : "trusted" } : {}),
          }),
        },
      };
    };

    const failuresSince = new Date(now.getTime() - deps.codeFailureWindowSeconds * 1000);
    const { decision, user } = await store.verifyChallenge(deps.opaqueTokens.hash(input.challengeToken), now, decide, failuresSince);
    const state = found as ChallengeState | null;
    if (decision.kind === "reject" || state === null || user === null) {
      const refused = failure as DomainError | undefined;
      if (refused?.code === "rate_limited" && state !== null) {
        // Say when the account's budget of wrong codes lifts (read only on this refusal).
        const nth = await store.nthRecentCodeFailure(state.challenge.userId, failuresSince, deps.maxCodeFailures);
        throw budgetExhausted(nth, deps.codeFailureWindowSeconds, now, "too many wrong codes for this account");
      }
      throw refused ?? new DomainError("internal", "MFA verification failed");
    }
    const pending = state.challenge.pendingIdentity;
    if (pending !== null) {
      // The e-mail link this challenge held back is written now, after the second factor.
      await recordQuietly({
        type: "identity.linked_by_email", at: now, userId: user.id, provider: pending.provider, issuer: pending.issuer,
        subject: pending.subject, client, detail: { by: "verified_email", second_factor: input.method, challenge_id: state.challenge.id },
      });
    }
    const accessToken = await deps.accessTokens.issue(
      { userId: user.id, sessionId, amr: decision.session.amr, provider: state.challenge.provider, authTime: now },
      now,
    );
    const result = loginResultOf(deps, user, sessionId, accessToken, refresh.token, now);
    result.risk = state.challenge.risk;
    if (decision.trustDevice !== null && trusted !== null) result.deviceCredential = (trusted as { token: string }).token;
    return result;
  }

  const service: MfaService = {
    async verify(input) {
      // Strict: a 6-digit code can be guessed, so an address over its limit is refused unheard.
      const attempt = await (deps.addressLimit?.admit(limitKeyOf(input.client), "VerifyMfa", { strict: true }) ?? UNLIMITED);
      try {
        const result = await verifyOnce(input);
        attempt.settle();
        return result;
      } catch (e) {
        // Counted as recorded: the refusals that write no row (empty fields) fall out at the next
        // read of the trail, which is what decides across replicas.
        attempt.settle(e);
        throw e;
      }
    },

    async beginWebauthn(challengeToken, client) {
      const pk = deps.passkeys;
      if (pk === undefined) throw new DomainError("mfa_method_not_available", "passkeys are not enabled");
      if (challengeToken === "") throw new DomainError("challenge_token_required", "challenge_token is required");
      if (!CHALLENGE_TOKEN.test(challengeToken)) throw new DomainError("challenge_invalid", "the challenge token is not valid; sign in again");
      const now = clock.now();
      const c = await store.findChallenge(deps.opaqueTokens.hash(challengeToken));
      if (c === null || c.consumedReason === "completed") {
        throw new DomainError("challenge_invalid", "the challenge token is not valid; sign in again");
      }
      if (c.consumedReason === "exhausted") throw new DomainError("challenge_exhausted", "too many attempts for this challenge; sign in again");
      if (c.expiresAt <= now) throw new DomainError("challenge_expired", "the challenge has expired; sign in again");
      if (c.deviceKey?.startsWith("id:") === true && deviceKeyOf(client)?.key !== c.deviceKey) {
        throw new DomainError("challenge_invalid", "this challenge was issued to another device; sign in again");
      }
      // Each call stores a ceremony: bounded per challenge, so a challenge token cannot fill the table.
      if ((await pk.store.countCeremonies(c.id)) >= MAX_CEREMONIES_PER_CHALLENGE) {
        throw new DomainError("challenge_exhausted", "too many passkey attempts for this challenge; sign in again");
      }
      const passkeys = c.methods.includes("webauthn") ? (await pk.store.listPasskeys(c.userId)).filter((p) => p.flaggedAt === null) : [];
      if (passkeys.length === 0) {
        throw new DomainError("mfa_method_not_available", `this challenge can be completed with: ${c.methods.join(", ")}`);
      }
      const { options, challenge } = await pk.ceremonies.authenticationOptions({
        rp: pk.rp(),
        allow: passkeys.map((p) => ({ credentialId: p.credentialId, transports: p.transports })),
      });
      const expiresAt = new Date(Math.min(now.getTime() + pk.ceremonyTtlSeconds * 1000, c.expiresAt.getTime()));
      await pk.store.saveCeremony({
        id: newId("wac"),
        challengeHash: ceremonyHash(challenge),
        userId: c.userId,
        purpose: "authentication",
        mfaChallengeId: c.id,
        sessionId: null,
        createdAt: now,
        expiresAt,
      });
      return options;
    },

    async beginStepUp(principal) {
      const pk = deps.passkeys;
      if (pk === undefined) throw new DomainError("mfa_method_not_available", "passkeys are not enabled");
      const now = clock.now();
      const passkeys = (await pk.store.listPasskeys(principal.userId)).filter((p) => p.flaggedAt === null);
      if (passkeys.length === 0) {
        throw new DomainError("mfa_method_not_available", "this account has no usable passkey; step up with a code (method totp or recovery_code)");
      }
      // Each call stores a ceremony: bounded per session, so an access token cannot fill the table.
      if ((await pk.store.countLiveStepUps(principal.sessionId, now)) >= MAX_STEP_UPS_PER_SESSION) {
        throw new DomainError("rate_limited", "too many passkey step-ups started on this session; wait a few minutes", {
          detail: { retry_after_seconds: String(pk.ceremonyTtlSeconds) },
        });
      }
      const { options, challenge } = await pk.ceremonies.authenticationOptions({
        rp: pk.rp(),
        allow: passkeys.map((p) => ({ credentialId: p.credentialId, transports: p.transports })),
      });
      await pk.store.saveCeremony({
        id: newId("wac"),
        challengeHash: ceremonyHash(challenge),
        userId: principal.userId,
        purpose: "step_up",
        mfaChallengeId: null,
        sessionId: principal.sessionId,
        createdAt: now,
        expiresAt: new Date(now.getTime() + pk.ceremonyTtlSeconds * 1000),
      });
      return options;
    },

    async status(principal) {
      const [factor, left, passkeys] = await Promise.all([
        store.findTotp(principal.userId),
        store.countRecoveryCodes(principal.userId),
        deps.passkeys?.store.listPasskeys(principal.userId) ?? [],
      ]);
      return {
        totpEnabled: factor?.confirmedAt != null,
        totpPending: factor !== null && factor.confirmedAt === null,
        recoveryCodesLeft: left,
        passkeys: passkeys.length,
      };
    },

    async enrollTotp(principal, client) {
      const now = clock.now();
      const user = await store.findUser(principal.userId);
      if (user === null) throw new DomainError("session_revoked", "this user no longer exists");
      const existing = await store.findTotp(user.id);
      if (existing?.confirmedAt != null) {
        throw new DomainError("totp_already_enrolled", "an authenticator is already enrolled; disable it first");
      }
      await stepUpRule(principal, false, now);
      const secret = totp.newSecret();
      const id = newId("mfa");
      await store.savePendingTotp(
        { id, userId: user.id, secretEnc: secrets.seal(secret, id), createdAt: now },
        { type: "mfa.totp_enrollment_started", at: now, userId: user.id, client, detail: { factor_id: id } },
      );
      return { secret, uri: totp.keyUri(secret, user.username), digits: totp.digits, period: totp.period, algorithm: totp.algorithm };
    },

    async confirmTotp(principal, code, client) {
      const userId = principal.userId;
      if (code.trim() === "") throw new DomainError("mfa_code_required", "code is required");
      const factor = await store.findTotp(userId);
      if (factor === null) throw new DomainError("totp_not_enrolled", "start enrollment first (EnrollTotp)");
      if (factor.confirmedAt !== null) throw new DomainError("totp_already_enrolled", "this authenticator is already active");
      const now = clock.now();
      await stepUpRule(principal, false, now);
      const step = totp.match(secrets.open(factor.secretEnc, factor.id), code, now, factor.lastUsedStep);
      if (step === null) {
        await recordQuietly({ type: "mfa.code_failed", at: now, code: "mfa_code_invalid", userId, client, detail: { action: "confirm_totp" } });
        throw new DomainError("mfa_code_invalid", "the code is not valid; check the authenticator's clock and try the current code");
      }
      const { codes, rows } = newRecoveryCodes(userId);
      // The first code of the new authenticator is a second factor completed on this session.
      const confirmed = await store.confirmTotp(factor.id, step, rows, now, principal.sessionId, {
        type: "mfa.totp_enrolled", at: now, userId, client, detail: { factor_id: factor.id, recovery_codes: rows.length },
      });
      if (!confirmed) throw new DomainError("totp_already_enrolled", "this enrollment was completed or replaced meanwhile");
      return codes;
    },

    async disableTotp(principal, code, client) {
      await withCurrentCode(principal, code, client, "disable_totp", (factorId, step, now) =>
        store.withTotpStep(factorId, step, { kind: "disable" }, now, {
          type: "mfa.totp_disabled", at: now, userId: principal.userId, client, detail: { factor_id: factorId },
        }),
      );
    },

    async regenerateRecoveryCodes(principal, code, client) {
      const { codes, rows } = newRecoveryCodes(principal.userId);
      await withCurrentCode(principal, code, client, "regenerate_recovery_codes", (factorId, step, now) =>
        store.withTotpStep(factorId, step, { kind: "replace_recovery_codes", codes: rows }, now, {
          type: "mfa.recovery_codes_regenerated", at: now, userId: principal.userId, client, detail: { recovery_codes: rows.length },
        }),
      );
      return codes;
    },

    async stepUp(principal, method, code, client, assertion) {
      const { userId, sessionId } = principal;
      if (!(METHODS as readonly string[]).includes(method)) {
        throw new DomainError("mfa_method_not_available", `method must be one of: ${METHODS.join(", ")}`);
      }
      const m = method as MfaMethod;
      const now = clock.now();
      let session;
      if (m === "webauthn") {
        const pk = deps.passkeys;
        if (pk === undefined) throw new DomainError("mfa_method_not_available", "passkeys are not enabled");
        if (assertion === undefined || assertion === null) throw new DomainError("mfa_code_required", "webauthn_assertion is required");
        // Malformed: refused before anything is written or counted.
        pk.ceremonies.read(boundedResponse(assertion), "authentication");
        session = await guess(userId, client, "step_up", now, async () => {
          const checked = await checkAssertion(assertion, now, client, principal);
          if (!checked.ok) return new Refused(checked.error);
          const spend = { kind: "webauthn" as const, passkeyId: checked.passkey.id, ceremonyId: checked.ceremonyId, signCount: checked.signCount, backedUp: checked.backedUp };
          const done = await store.stepUp(sessionId, userId, spend, [AMR_OF.webauthn, "mfa"], now, {
            type: "mfa.step_up", at: now, userId, client, detail: { method: m, session_id: sessionId, passkey_id: checked.passkey.id },
          });
          if (done === "session_gone") throw new DomainError("session_revoked", "this session no longer exists");
          // Spent meanwhile (a replay racing this one) or the counter moved meanwhile.
          return done === "not_spent"
            ? new Refused(new DomainError("webauthn_challenge_invalid", "this passkey answer was used already; start again"))
            : done;
        });
      } else {
        if (code.trim() === "") throw new DomainError("mfa_code_required", "code is required");
        const factor = await store.findTotp(userId);
        if (factor === null || factor.confirmedAt === null) {
          throw (await usablePasskeys(userId)) > 0
            ? new DomainError("totp_not_enrolled", "no authenticator is enrolled: step up with a passkey (BeginStepUp, then method webauthn)")
            : new DomainError("totp_not_enrolled", "no second factor is enrolled: a recent sign-in is the step-up (sign in again)");
        }
        session = await guess(userId, client, "step_up", now, async () => {
          const spend =
            m === "totp"
              ? (() => {
                  const step = totp.match(secrets.open(factor.secretEnc, factor.id), code, now, factor.lastUsedStep);
                  return step === null ? null : { kind: "totp" as const, factorId: factor.id, step };
                })()
              : { kind: "recovery_code" as const, codeHash: recoveryCodes.hash(userId, code) };
          if (spend === null) return null;
          const done = await store.stepUp(sessionId, userId, spend, [AMR_OF[m], "mfa"], now, {
            type: "mfa.step_up", at: now, userId, client, detail: { method: m, session_id: sessionId },
          });
          if (done === "session_gone") throw new DomainError("session_revoked", "this session no longer exists");
          // A replayed TOTP step or a used recovery code: wrong.
          return done === "not_spent" ? null : done;
        });
      }
      const accessToken = await deps.accessTokens.issue(
        { userId, sessionId, amr: session.amr, provider: session.provider, authTime: session.authTime },
        now,
      );
      return {
        accessToken,
        expiresIn: deps.accessTokens.ttlSeconds,
        maxAgeSeconds: deps.stepUpMaxAgeSeconds,
      };
    },
  };
  const events = deps.events;
  if (events === undefined) return service;
  return {
    ...service,
    async verify(input) {
      const method = (METHODS as readonly string[]).includes(input.method) ? input.method : "unknown";
      try {
        const result = await service.verify(input);
        events.mfaVerification(method, "success");
        return result;
      } catch (e) {
        events.mfaVerification(method, isDomainError(e) ? e.code : "internal");
        throw e;
      }
    },
  };
}
