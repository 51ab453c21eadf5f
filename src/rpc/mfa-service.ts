import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import type { MfaService as MfaCore } from "../core/mfa.ts";
import type { PasskeyInfo, PasskeyService } from "../core/passkeys.ts";
import {
  BeginPasskeyRegistrationResponseSchema,
  BeginStepUpResponseSchema,
  FinishPasskeyRegistrationResponseSchema,
  ListPasskeysResponseSchema,
  type Passkey,
  PasskeySchema,
  RemovePasskeyResponseSchema,
  RenamePasskeyResponseSchema,
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

function passkeyToPb(p: PasskeyInfo): Passkey {
  return create(PasskeySchema, {
    id: p.id,
    name: p.name,
    createdAt: timestampFromDate(p.createdAt),
    lastUsedAt: p.lastUsedAt === null ? undefined : timestampFromDate(p.lastUsedAt),
    authenticatorType: p.deviceType === "multiDevice" ? "multi_device" : "single_device",
    backedUp: p.backedUp,
    transports: p.transports,
    aaguid: p.aaguid,
    flagged: p.flaggedAt !== null,
  });
}

/** Registers MfaService; every method runs behind the auth interceptor. */
export function registerMfaService(deps: { mfa: MfaCore; passkeys: PasskeyService }) {
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
        const codes = await deps.mfa.regenerateRecoveryCodes(
          principalOf(ctx.values),
          req.code,
          ctx.values.get(kClient),
        );
        return create(RegenerateRecoveryCodesResponseSchema, { recoveryCodes: codes });
      },
      async beginPasskeyRegistration(_req, ctx) {
        return create(BeginPasskeyRegistrationResponseSchema, {
          options: await deps.passkeys.beginRegistration(principalOf(ctx.values)),
        });
      },
      async finishPasskeyRegistration(req, ctx) {
        const passkey = await deps.passkeys.finishRegistration(
          principalOf(ctx.values),
          req.credential,
          req.name,
          ctx.values.get(kClient),
        );
        return create(FinishPasskeyRegistrationResponseSchema, { passkey: passkeyToPb(passkey) });
      },
      async listPasskeys(_req, ctx) {
        const passkeys = await deps.passkeys.list(principalOf(ctx.values));
        return create(ListPasskeysResponseSchema, { passkeys: passkeys.map(passkeyToPb) });
      },
      async renamePasskey(req, ctx) {
        const passkey = await deps.passkeys.rename(principalOf(ctx.values), req.id, req.name);
        return create(RenamePasskeyResponseSchema, { passkey: passkeyToPb(passkey) });
      },
      async removePasskey(req, ctx) {
        await deps.passkeys.remove(principalOf(ctx.values), req.id, ctx.values.get(kClient));
        return create(RemovePasskeyResponseSchema, {});
      },
      async beginStepUp(_req, ctx) {
        return create(BeginStepUpResponseSchema, { options: await deps.mfa.beginStepUp(principalOf(ctx.values)) });
      },
      async stepUp(req, ctx) {
        const r = await deps.mfa.stepUp(
          principalOf(ctx.values),
          req.method,
          req.code,
          ctx.values.get(kClient),
          req.webauthnAssertion,
        );
        return create(StepUpResponseSchema, {
          accessToken: r.accessToken,
          expiresIn: r.expiresIn,
          maxAge: r.maxAgeSeconds,
        });
      },
    });
  };
}
