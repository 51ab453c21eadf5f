import { describe, expect, it } from "vitest";
import { isDomainError } from "../../src/core/errors.ts";
import type { Principal } from "../../src/core/model.ts";
import { requireStepUp, type UserFactors } from "../../src/core/step-up.ts";

const NOW = new Date("2026-01-01T12:00:00Z");
const ago = (s: number) => new Date(NOW.getTime() - s * 1000);
const principal = (authTime: Date, mfaAt: Date | null): Principal => ({
  userId: "usr_1",
  sessionId: "ses_1",
  amr: ["fed"],
  session: { authTime, mfaAt, clientId: null },
});

/** The refusal (its detail), or null when allowed; counts the reads of the user's factors. */
async function judge(p: Principal, factors: UserFactors) {
  let reads = 0;
  try {
    await requireStepUp(p, async () => (reads++, factors), 600, NOW);
    return { refusal: null, reads };
  } catch (e) {
    if (!isDomainError(e)) throw e;
    expect(e.code).toBe("reauthentication_required");
    return { refusal: e.detail ?? {}, reads };
  }
}

describe("the step-up rule of factor changes (TOTP and passkeys alike)", () => {
  it("a recent second factor allows any change without reading the factors", async () => {
    expect(await judge(principal(ago(5000), ago(600)), { totp: true, passkeys: 2 })).toEqual({
      refusal: null,
      reads: 0,
    });
  });

  it("a recent sign-in is enough only for an account without a factor; a passkey is a factor", async () => {
    expect((await judge(principal(ago(10), null), { totp: false, passkeys: 0 })).refusal).toBeNull();
    // Regression: a passkey-only account could add TOTP on a recent sign-in alone.
    const passkeyOnly = await judge(principal(ago(10), null), { totp: false, passkeys: 1 });
    expect(passkeyOnly.refusal).toEqual({
      step_up: "MfaService.StepUp",
      step_up_route: "POST /auth/mfa/step-up",
      step_up_methods: "webauthn",
      step_up_begin: "MfaService.BeginStepUp",
      step_up_begin_route: "POST /auth/mfa/step-up/webauthn/begin",
      max_age_seconds: "600",
    });
    expect((await judge(principal(ago(10), null), { totp: true, passkeys: 0 })).refusal).toEqual({
      step_up: "MfaService.StepUp",
      step_up_route: "POST /auth/mfa/step-up",
      step_up_methods: "totp,recovery_code",
      max_age_seconds: "600",
    });
    expect((await judge(principal(ago(10), null), { totp: true, passkeys: 1 })).refusal).toMatchObject({
      step_up_methods: "totp,recovery_code,webauthn",
    });
  });

  it("too old, or unknown (a token without its session row), is refused", async () => {
    expect((await judge(principal(ago(601), null), { totp: false, passkeys: 0 })).refusal).toMatchObject({
      step_up: "AuthService.SigninWithIdToken",
    });
    expect((await judge(principal(ago(10), ago(601)), { totp: false, passkeys: 1 })).refusal).toMatchObject({
      step_up_methods: "webauthn",
    });
    expect(
      (await judge({ userId: "usr_1", sessionId: "ses_1", amr: [] }, { totp: false, passkeys: 0 })).refusal,
    ).toMatchObject({ max_age_seconds: "600" });
  });
});
