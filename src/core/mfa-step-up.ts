import { DomainError } from "./errors.ts";
import { newId } from "./ids.ts";
import type { ClientInfo, Principal } from "./model.ts";
import { AMR_OF, type MfaChecks, methodOf, Refused } from "./mfa-checks.ts";
import type { MfaService, MfaServiceDeps } from "./mfa.ts";
import { boundedResponse, ceremonyHash } from "./passkeys.ts";
import type { MfaMethod } from "./risk.ts";

/** Live step-up ceremonies one session may hold (BeginStepUp calls within the ceremony TTL). */
export const MAX_STEP_UPS_PER_SESSION = 10;

/** A second factor completed on the signed-in session (StepUp, BeginStepUp): factor changes are allowed for a while. */
export type SessionStepUp = Pick<MfaService, "stepUp" | "beginStepUp">;

/** What a completed step-up tells: the session's amr, provider and sign-in time. */
type SteppedUp = { amr: string[]; provider: string | null; authTime: Date };

export function createSessionStepUp(deps: MfaServiceDeps, checks: MfaChecks): SessionStepUp {
  const { clock, store, totp, secrets, recoveryCodes } = deps;

  /** Step-up with a passkey answering beginStepUp: a refused answer counts like a wrong code. */
  async function withPasskey(
    principal: Principal,
    client: ClientInfo,
    assertion: unknown,
    now: Date,
  ): Promise<SteppedUp> {
    const { userId, sessionId } = principal;
    const pk = deps.passkeys;
    if (pk === undefined) throw new DomainError("mfa_method_not_available", "passkeys are not enabled");
    if (assertion === undefined || assertion === null)
      throw new DomainError("mfa_code_required", "webauthn_assertion is required");
    // Malformed: refused before anything is written or counted.
    pk.ceremonies.read(boundedResponse(assertion), "authentication");
    return await checks.guess(userId, client, "step_up", now, async () => {
      const checked = await checks.checkAssertion(assertion, now, client, principal);
      if (!checked.ok) return new Refused(checked.error);
      const spend = {
        kind: "webauthn" as const,
        passkeyId: checked.passkey.id,
        ceremonyId: checked.ceremonyId,
        signCount: checked.signCount,
        backedUp: checked.backedUp,
      };
      const done = await store.stepUp(sessionId, userId, spend, [AMR_OF.webauthn, "mfa"], now, {
        type: "mfa.step_up",
        at: now,
        userId,
        client,
        detail: { method: "webauthn", session_id: sessionId, passkey_id: checked.passkey.id },
      });
      if (done === "session_gone") throw new DomainError("session_revoked", "this session no longer exists");
      // Spent meanwhile (a replay racing this one) or the counter moved meanwhile.
      return done === "not_spent"
        ? new Refused(
            new DomainError("webauthn_challenge_invalid", "this passkey answer was used already; start again"),
          )
        : done;
    });
  }

  /** Step-up with a TOTP code or a recovery code of the user's confirmed authenticator. */
  async function withCode(
    principal: Principal,
    m: Exclude<MfaMethod, "webauthn">,
    code: string,
    client: ClientInfo,
    now: Date,
  ): Promise<SteppedUp> {
    const { userId, sessionId } = principal;
    if (code.trim() === "") throw new DomainError("mfa_code_required", "code is required");
    const factor = await store.findTotp(userId);
    if (factor === null || factor.confirmedAt === null) {
      throw (await checks.usablePasskeys(userId)) > 0
        ? new DomainError(
            "totp_not_enrolled",
            "no authenticator is enrolled: step up with a passkey (BeginStepUp, then method webauthn)",
          )
        : new DomainError(
            "totp_not_enrolled",
            "no second factor is enrolled: a recent sign-in is the step-up (sign in again)",
          );
    }
    return await checks.guess(userId, client, "step_up", now, async () => {
      const spend =
        m === "totp"
          ? (() => {
              const step = totp.match(secrets.open(factor.secretEnc, factor.id), code, now, factor.lastUsedStep);
              return step === null ? null : { kind: "totp" as const, factorId: factor.id, step };
            })()
          : { kind: "recovery_code" as const, codeHash: recoveryCodes.hash(userId, code) };
      if (spend === null) return null;
      const done = await store.stepUp(sessionId, userId, spend, [AMR_OF[m], "mfa"], now, {
        type: "mfa.step_up",
        at: now,
        userId,
        client,
        detail: { method: m, session_id: sessionId },
      });
      if (done === "session_gone") throw new DomainError("session_revoked", "this session no longer exists");
      // A replayed TOTP step or a used recovery code: wrong.
      return done === "not_spent" ? null : done;
    });
  }

  return {
    async stepUp(principal, method, code, client, assertion) {
      const { userId, sessionId } = principal;
      const m = methodOf(method);
      const now = clock.now();
      const session =
        m === "webauthn"
          ? await withPasskey(principal, client, assertion, now)
          : await withCode(principal, m, code, client, now);
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

    async beginStepUp(principal) {
      const pk = deps.passkeys;
      if (pk === undefined) throw new DomainError("mfa_method_not_available", "passkeys are not enabled");
      const now = clock.now();
      const passkeys = (await pk.store.listPasskeys(principal.userId)).filter((p) => p.flaggedAt === null);
      if (passkeys.length === 0) {
        throw new DomainError(
          "mfa_method_not_available",
          "this account has no usable passkey; step up with a code (method totp or recovery_code)",
        );
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
  };
}
