import { DomainError } from "./errors.ts";
import { newId } from "./ids.ts";
import type { ClientInfo, Principal } from "./model.ts";
import type { MfaChecks } from "./mfa-checks.ts";
import type { MfaService, MfaServiceDeps } from "./mfa.ts";
import { quietRecorder } from "./quiet-audit.ts";

/** The user's TOTP authenticator and its recovery codes: status, enrolment, disabling, new codes. */
export type TotpFactors = Pick<
  MfaService,
  "status" | "enrollTotp" | "confirmTotp" | "disableTotp" | "regenerateRecoveryCodes"
>;

export function createTotpFactors(deps: MfaServiceDeps, checks: MfaChecks): TotpFactors {
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
    await checks.stepUpRule(principal, true, now);
    await checks.guess(userId, client, action, now, async () => {
      const step = totp.match(secrets.open(factor.secretEnc, factor.id), code, now, factor.lastUsedStep);
      // Spent in the write itself: a step used meanwhile (a replay) is a wrong code too.
      return step !== null && (await apply(factor.id, step, now)) ? true : null;
    });
  }

  return {
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
      await checks.stepUpRule(principal, false, now);
      const secret = totp.newSecret();
      const id = newId("mfa");
      await store.savePendingTotp(
        { id, userId: user.id, secretEnc: secrets.seal(secret, id), createdAt: now },
        { type: "mfa.totp_enrollment_started", at: now, userId: user.id, client, detail: { factor_id: id } },
      );
      return {
        secret,
        uri: totp.keyUri(secret, user.username),
        digits: totp.digits,
        period: totp.period,
        algorithm: totp.algorithm,
      };
    },

    async confirmTotp(principal, code, client) {
      const userId = principal.userId;
      if (code.trim() === "") throw new DomainError("mfa_code_required", "code is required");
      const factor = await store.findTotp(userId);
      if (factor === null) throw new DomainError("totp_not_enrolled", "start enrollment first (EnrollTotp)");
      if (factor.confirmedAt !== null)
        throw new DomainError("totp_already_enrolled", "this authenticator is already active");
      const now = clock.now();
      await checks.stepUpRule(principal, false, now);
      const step = totp.match(secrets.open(factor.secretEnc, factor.id), code, now, factor.lastUsedStep);
      if (step === null) {
        await recordQuietly({
          type: "mfa.code_failed",
          at: now,
          code: "mfa_code_invalid",
          userId,
          client,
          detail: { action: "confirm_totp" },
        });
        throw new DomainError(
          "mfa_code_invalid",
          "the code is not valid; check the authenticator's clock and try the current code",
        );
      }
      const { codes, rows } = newRecoveryCodes(userId);
      // The first code of the new authenticator is a second factor completed on this session.
      const confirmed = await store.confirmTotp(factor.id, step, rows, now, principal.sessionId, {
        type: "mfa.totp_enrolled",
        at: now,
        userId,
        client,
        detail: { factor_id: factor.id, recovery_codes: rows.length },
      });
      if (!confirmed)
        throw new DomainError("totp_already_enrolled", "this enrollment was completed or replaced meanwhile");
      return codes;
    },

    async disableTotp(principal, code, client) {
      await withCurrentCode(principal, code, client, "disable_totp", (factorId, step, now) =>
        store.withTotpStep(factorId, step, { kind: "disable" }, now, {
          type: "mfa.totp_disabled",
          at: now,
          userId: principal.userId,
          client,
          detail: { factor_id: factorId },
        }),
      );
    },

    async regenerateRecoveryCodes(principal, code, client) {
      const { codes, rows } = newRecoveryCodes(principal.userId);
      await withCurrentCode(principal, code, client, "regenerate_recovery_codes", (factorId, step, now) =>
        store.withTotpStep(factorId, step, { kind: "replace_recovery_codes", codes: rows }, now, {
          type: "mfa.recovery_codes_regenerated",
          at: now,
          userId: principal.userId,
          client,
          detail: { recovery_codes: rows.length },
        }),
      );
      return codes;
    },
  };
}
