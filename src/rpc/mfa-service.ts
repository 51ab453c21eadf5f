import { create } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import type { MfaService as MfaCore } from "../core/mfa.ts";
import {
  ConfirmTotpResponseSchema,
  DisableTotpResponseSchema,
  EnrollTotpResponseSchema,
  GetMfaStatusResponseSchema,
  MfaService,
  RegenerateRecoveryCodesResponseSchema,
  StepUpResponseSchema,
} from "../../gen/pb/identity/v1/mfa_service_pb.ts";
import { principalOf } from "./auth-interceptor.ts";
import { kClient } from "./context.ts";

/** Registers MfaService; every method runs behind the auth interceptor. */
export function registerMfaService(deps: { mfa: MfaCore }) {
  return (router: ConnectRouter) => {
    router.service(MfaService, {
      async getMfaStatus(_req, ctx) {
        const status = await deps.mfa.status(principalOf(ctx.values));
        return create(GetMfaStatusResponseSchema, status);
      },
      async enrollTotp(_req, ctx) {
        const e = await deps.mfa.enrollTotp(principalOf(ctx.values), ctx.values.get(kClient));
        return create(EnrollTotpResponseSchema, {
          secret: e.secret,
          otpauthUri: e.uri,
          digits: e.digits,
          period: e.period,
          algorithm: e.algorithm,
        });
      },
      async confirmTotp(req, ctx) {
        const codes = await deps.mfa.confirmTotp(principalOf(ctx.values), req.code, ctx.values.get(kClient));
        return create(ConfirmTotpResponseSchema, { recoveryCodes: codes });
      },
      async disableTotp(req, ctx) {
        await deps.mfa.disableTotp(principalOf(ctx.values), req.code, ctx.values.get(kClient));
        return create(DisableTotpResponseSchema, {});
      },
      async regenerateRecoveryCodes(req, ctx) {
        const codes = await deps.mfa.regenerateRecoveryCodes(principalOf(ctx.values), req.code, ctx.values.get(kClient));
        return create(RegenerateRecoveryCodesResponseSchema, { recoveryCodes: codes });
      },
      async stepUp(req, ctx) {
        const r = await deps.mfa.stepUp(principalOf(ctx.values), req.method, req.code, ctx.values.get(kClient));
        return create(StepUpResponseSchema, { accessToken: r.accessToken, expiresIn: r.expiresIn, maxAge: r.maxAgeSeconds });
      },
    });
  };
}
