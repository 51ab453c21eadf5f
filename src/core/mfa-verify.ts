import { budgetExhausted, limitKeyOf, UNLIMITED } from "./address-limit.ts";
import { DomainError, isDomainError } from "./errors.ts";
import { newId } from "./ids.ts";
import type { ClientInfo, LoginResult, UserWithPassword } from "./model.ts";
import { AMR_OF, type AssertionCheck, type MfaChecks, methodOf } from "./mfa-checks.ts";
import type { MfaService, MfaServiceDeps, VerifyMfaInput } from "./mfa.ts";
import { loginResultOf } from "./login-result.ts";
import { ceremonyHash } from "./passkeys.ts";
import type { ChallengeDecision, ChallengeRecord, ChallengeState } from "./ports/mfa.ts";
import { quietRecorder } from "./quiet-audit.ts";
import type { MfaMethod } from "./risk.ts";
import { coarseUserAgent, deviceKeyOf } from "./signin-context.ts";
import { assertActive } from "./user-status.ts";

/** Completing a challenged sign-in (VerifyMfa), and the passkey ceremonies that answer one (BeginWebauthnMfa). */
export type ChallengeCompletion = Pick<MfaService, "verify" | "beginWebauthn">;

const CHALLENGE_TOKEN = /^chg_[A-Za-z0-9_-]{43}$/;
/** Passkey ceremonies one MFA challenge may open (BeginWebauthnMfa calls). */
export const MAX_CEREMONIES_PER_CHALLENGE = 10;

type Completed = Extract<ChallengeDecision, { kind: "complete" }>;
type Spend = Completed["spend"];

/** One VerifyMfa call: what was asked, and what the decision inside the store's transaction saw and chose. */
interface Attempt {
  input: VerifyMfaInput;
  method: MfaMethod;
  now: Date;
  /** The passkey answer checked before the transaction (method `webauthn`). */
  assertion: AssertionCheck | null;
  refresh: { token: string; hash: string };
  sessionId: string;
  found: ChallengeState | null;
  failure: DomainError | undefined;
  trusted: { token: string; hash: string } | null;
}

/** The method asked for, after the fields it needs are checked as present (nothing read or written yet). */
function methodOfInput(input: VerifyMfaInput, passkeysEnabled: boolean): MfaMethod {
  if (input.challengeToken === "") throw new DomainError("challenge_token_required", "challenge_token is required");
  const method = methodOf(input.method);
  if (method === "webauthn") {
    if (!passkeysEnabled) throw new DomainError("mfa_method_not_available", "passkeys are not enabled");
    if (input.assertion === undefined || input.assertion === null) {
      throw new DomainError("mfa_code_required", "webauthn_assertion is required");
    }
  } else if (input.code.trim() === "") throw new DomainError("mfa_code_required", "code is required");
  return method;
}

/** Why this challenge cannot be completed at all, whatever the answer: null when it can. */
function challengeRefusal(
  state: ChallengeState,
  client: ClientInfo,
  now: Date,
  maxCodeFailures: number,
): DomainError | null {
  const c = state.challenge;
  if (c.consumedReason === "completed") {
    return new DomainError("challenge_invalid", "this challenge was already used; sign in again");
  }
  if (c.consumedReason === "exhausted") {
    return new DomainError("challenge_exhausted", "too many attempts for this challenge; sign in again");
  }
  if (c.expiresAt <= now) return new DomainError("challenge_expired", "the challenge has expired; sign in again");
  // Bound to the device it was issued to, when that device identified itself (compared by
  // the hashed key: the raw device id is stored nowhere).
  if (c.deviceKey?.startsWith("id:") === true && deviceKeyOf(client)?.key !== c.deviceKey) {
    return new DomainError("challenge_invalid", "this challenge was issued to another device; sign in again");
  }
  // Bound to the door and client whose sign-in asked for it: the session it opens is theirs.
  if ((c.clientId ?? null) !== (client.oauthClientId ?? null)) {
    return new DomainError("challenge_invalid", "this challenge was issued to another client; sign in again");
  }
  try {
    assertActive(state.user, now);
  } catch (e) {
    if (isDomainError(e)) return e;
    throw e;
  }
  if (state.recentCodeFailures >= maxCodeFailures) {
    return new DomainError("rate_limited", "too many wrong codes for this account; wait a few minutes and try again");
  }
  return null;
}

/** Why a wrong answer is refused: the passkey's own refusal, a wrong code, or a method this challenge does not take. */
function wrongAnswer(c: ChallengeRecord, method: MfaMethod, refusal: DomainError | null, left: number): DomainError {
  const attemptsLeft = { attempts_left: String(left) };
  if (refusal !== null) {
    return new DomainError(refusal.code, refusal.message, { detail: { ...refusal.detail, ...attemptsLeft } });
  }
  return c.methods.includes(method)
    ? new DomainError("mfa_code_invalid", "the code is not valid (wrong, expired or already used)", {
        detail: attemptsLeft,
      })
    : new DomainError("mfa_method_not_available", `this challenge can be completed with: ${c.methods.join(", ")}`, {
        detail: attemptsLeft,
      });
}

export function createChallengeCompletion(deps: MfaServiceDeps, checks: MfaChecks): ChallengeCompletion {
  const { clock, store, totp, secrets, recoveryCodes } = deps;
  const recordQuietly = quietRecorder(deps.audit, deps.onAuditFailure);

  /** What the answer spends on this challenge, or (spend null) the passkey's refusal if any. */
  function spendOf(a: Attempt, state: ChallengeState): { spend: Spend | null; refusal: DomainError | null } {
    const c = state.challenge;
    const { method, assertion, now } = a;
    if (!c.methods.includes(method)) return { spend: null, refusal: null };
    if (method === "webauthn" && assertion !== null) {
      if (!assertion.ok) return { spend: null, refusal: assertion.error };
      if (assertion.passkey.userId !== c.userId) {
        const refusal = new DomainError("webauthn_credential_unknown", "this passkey is not one of this account's");
        return { spend: null, refusal };
      }
      if (assertion.mfaChallengeId !== c.id) {
        const message = "this passkey answer is for another sign-in; start again";
        return { spend: null, refusal: new DomainError("webauthn_challenge_invalid", message) };
      }
      const { passkey, ceremonyId, signCount, backedUp } = assertion;
      return { spend: { kind: "webauthn", passkeyId: passkey.id, ceremonyId, signCount, backedUp }, refusal: null };
    }
    if (method === "totp" && state.totp !== null) {
      const f = state.totp;
      const step = totp.match(secrets.open(f.secretEnc, f.id), a.input.code, now, f.lastUsedStep);
      return { spend: step === null ? null : { kind: "totp", factorId: f.id, step }, refusal: null };
    }
    if (method === "recovery_code") {
      const hash = recoveryCodes.hash(c.userId, a.input.code);
      const match = state.recoveryCodes.find((r) => recoveryCodes.equal(r.codeHash, hash));
      return { spend: match === undefined ? null : { kind: "recovery_code", codeId: match.id }, refusal: null };
    }
    return { spend: null, refusal: null };
  }

  /** The audit record of this attempt on `state`'s challenge. */
  function auditOf(
    a: Attempt,
    state: ChallengeState | null,
    type: string,
    code: string | undefined,
    extra: Record<string, unknown> = {},
  ) {
    return {
      type,
      at: a.now,
      code,
      userId: state?.challenge.userId,
      provider: state?.challenge.provider,
      client: a.input.client,
      detail:
        state === null
          ? { method: a.method }
          : { challenge_id: state.challenge.id, method: a.method, attempts: state.challenge.attempts, ...extra },
    };
  }

  /** The completed challenge: the session it opens, its refresh token, the device trust asked for, the audit. */
  function completion(a: Attempt, state: ChallengeState, spend: Spend): Completed {
    const c = state.challenge;
    const { input, method, now, sessionId } = a;
    const client = input.client;
    const amr = [...new Set([...c.amr, AMR_OF[method], "mfa"])];
    // Trust is a fresh credential (256 random bits) handed to this client once; only its hash
    // is stored, bound to the user. Nothing the client sent before (device id, User-Agent) is it.
    const trusted = input.trustDevice && deps.trustedDeviceDays > 0 ? deps.opaqueTokens.issue("tdc") : null;
    a.trusted = trusted;
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
      refreshToken: { id: newId("rtk"), sessionId, tokenHash: a.refresh.hash, createdAt: now, expiresAt },
      seen: { ...c.context, trustedDeviceId: null },
      trustDevice:
        trusted === null
          ? null
          : {
              id: newId("tdv"),
              userId: c.userId,
              credentialHash: trusted.hash,
              label: coarseUserAgent(client.userAgent),
              createdAt: now,
              expiresAt: new Date(now.getTime() + deps.trustedDeviceDays * 86_400_000),
            },
      audit: {
        ...auditOf(a, state, "signin.succeeded", undefined, {
          account: c.pendingIdentity === null ? "existing" : "link",
          mfa: { method, challenge_id: c.id, ...(spend.kind === "webauthn" ? { passkey_id: spend.passkeyId } : {}) },
          risk: { score: c.risk.score, level: c.risk.level, reason: c.risk.reason },
          ...(input.trustDevice ? { trust_device: trusted === null ? "refused_disabled" : "trusted" } : {}),
        }),
      },
    };
  }

  /** The decision inside the store's transaction, on the challenge as it stands there. */
  function decide(a: Attempt, state: ChallengeState | null): ChallengeDecision {
    a.found = state;
    const reject = (error: DomainError, kill = false): ChallengeDecision => {
      a.failure = error;
      const type = kill ? "mfa.challenge_exhausted" : "mfa.verify_failed";
      return { kind: "reject", kill, audit: auditOf(a, state, type, error.code) };
    };
    if (state === null)
      return reject(new DomainError("challenge_invalid", "the challenge token is not valid; sign in again"));
    const refusal = challengeRefusal(state, a.input.client, a.now, deps.maxCodeFailures);
    if (refusal !== null) return reject(refusal);
    const { spend, refusal: answerRefusal } = spendOf(a, state);
    if (spend !== null) return completion(a, state, spend);
    const left = deps.maxAttempts - state.challenge.attempts;
    if (left <= 0) return reject(new DomainError("challenge_exhausted", "too many wrong codes; sign in again"), true);
    return reject(wrongAnswer(state.challenge, a.method, answerRefusal, left));
  }

  /** The refusal of a rejected attempt; a spent budget says when it lifts (read only on this refusal). */
  async function refusalOf(a: Attempt, failuresSince: Date): Promise<DomainError> {
    const state = a.found;
    if (a.failure?.code === "rate_limited" && state !== null) {
      const nth = await store.nthRecentCodeFailure(state.challenge.userId, failuresSince, deps.maxCodeFailures);
      return budgetExhausted(nth, deps.codeFailureWindowSeconds, a.now, "too many wrong codes for this account");
    }
    return a.failure ?? new DomainError("internal", "MFA verification failed");
  }

  /** The sign-in's answer once the challenge is completed: the e-mail link it held back audited, the tokens. */
  async function signedIn(
    a: Attempt,
    state: ChallengeState,
    user: UserWithPassword,
    decision: Completed,
  ): Promise<LoginResult> {
    const { now, sessionId, input } = a;
    const pending = state.challenge.pendingIdentity;
    if (pending !== null) {
      // The e-mail link this challenge held back is written now, after the second factor.
      await recordQuietly({
        type: "identity.linked_by_email",
        at: now,
        userId: user.id,
        provider: pending.provider,
        issuer: pending.issuer,
        subject: pending.subject,
        client: input.client,
        detail: { by: "verified_email", second_factor: input.method, challenge_id: state.challenge.id },
      });
    }
    const accessToken = await deps.accessTokens.issue(
      { userId: user.id, sessionId, amr: decision.session.amr, provider: state.challenge.provider, authTime: now },
      now,
    );
    const result = loginResultOf(deps, user, sessionId, accessToken, a.refresh.token, now);
    result.risk = state.challenge.risk;
    if (decision.trustDevice !== null && a.trusted !== null) result.deviceCredential = a.trusted.token;
    return result;
  }

  /**
   * One VerifyMfa answer: the fields checked, the challenge token's shape, a passkey answer
   * checked as far as it can be outside the transaction, then the store's transaction around
   * `decide`, and the refusal or the signed-in answer after it.
   */
  async function verifyOnce(input: VerifyMfaInput): Promise<LoginResult> {
    const { client } = input;
    const method = methodOfInput(input, deps.passkeys !== undefined);
    const now = clock.now();
    if (!CHALLENGE_TOKEN.test(input.challengeToken)) {
      await recordQuietly({
        type: "mfa.verify_failed",
        at: now,
        code: "challenge_invalid",
        client,
        detail: { method },
      });
      throw new DomainError("challenge_invalid", "the challenge token is not valid; sign in again");
    }
    // A malformed assertion is refused here, before anything is written; every other verdict on
    // it is the challenge's (an attempt counted, audited), decided in the transaction below.
    const assertion = method === "webauthn" ? await checks.checkAssertion(input.assertion, now, client) : null;
    const a: Attempt = {
      input,
      method,
      now,
      assertion,
      refresh: deps.opaqueTokens.issue("rt"),
      sessionId: newId("ses"),
      found: null,
      failure: undefined,
      trusted: null,
    };
    const failuresSince = new Date(now.getTime() - deps.codeFailureWindowSeconds * 1000);
    const { decision, user } = await store.verifyChallenge(
      deps.opaqueTokens.hash(input.challengeToken),
      now,
      (state) => decide(a, state),
      failuresSince,
    );
    const state = a.found;
    if (decision.kind === "reject" || state === null || user === null) throw await refusalOf(a, failuresSince);
    return await signedIn(a, state, user, decision);
  }

  return {
    async verify(input) {
      // Strict: a 6-digit code can be guessed, so an address over its limit is refused unheard.
      const attempt = await (deps.addressLimit?.admit(limitKeyOf(input.client), "VerifyMfa", { strict: true }) ??
        UNLIMITED);
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
      if (!CHALLENGE_TOKEN.test(challengeToken))
        throw new DomainError("challenge_invalid", "the challenge token is not valid; sign in again");
      const now = clock.now();
      const c = await store.findChallenge(deps.opaqueTokens.hash(challengeToken));
      if (c === null || c.consumedReason === "completed") {
        throw new DomainError("challenge_invalid", "the challenge token is not valid; sign in again");
      }
      if (c.consumedReason === "exhausted")
        throw new DomainError("challenge_exhausted", "too many attempts for this challenge; sign in again");
      if (c.expiresAt <= now) throw new DomainError("challenge_expired", "the challenge has expired; sign in again");
      if (c.deviceKey?.startsWith("id:") === true && deviceKeyOf(client)?.key !== c.deviceKey) {
        throw new DomainError("challenge_invalid", "this challenge was issued to another device; sign in again");
      }
      // Each call stores a ceremony: bounded per challenge, so a challenge token cannot fill the table.
      if ((await pk.store.countCeremonies(c.id)) >= MAX_CEREMONIES_PER_CHALLENGE) {
        throw new DomainError("challenge_exhausted", "too many passkey attempts for this challenge; sign in again");
      }
      const passkeys = c.methods.includes("webauthn")
        ? (await pk.store.listPasskeys(c.userId)).filter((p) => p.flaggedAt === null)
        : [];
      if (passkeys.length === 0) {
        throw new DomainError(
          "mfa_method_not_available",
          `this challenge can be completed with: ${c.methods.join(", ")}`,
        );
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
  };
}
