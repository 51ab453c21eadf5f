import { create } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import type { PasswordService } from "../core/passwords.ts";
import type { SessionListing, SessionService } from "../core/sessions.ts";
import {
  ChangePasswordResponseSchema,
  ForgetDeviceResponseSchema,
  ListSessionsResponseSchema,
  RevokeSessionResponseSchema,
  type Session,
  SessionSchema,
  UserService,
} from "../../gen/pb/identity/v1/user_service_pb.ts";
import { principalOf } from "./auth-interceptor.ts";
import { rfc3339, userToPb } from "./auth-service.ts";
import { kClient } from "./context.ts";

/** Registers UserService; every method runs behind the auth interceptor. */
export function registerUserService(deps: { sessions: SessionService; passwords: PasswordService }) {
  return (router: ConnectRouter) => {
    router.service(UserService, {
      async getCurrentUser(_req, ctx) {
        const { user, passwordStatus } = await deps.sessions.currentUser(principalOf(ctx.values));
        return userToPb(user, passwordStatus);
      },
      async listSessions(_req, ctx) {
        const principal = principalOf(ctx.values);
        const sessions = await deps.sessions.listSessions(principal);
        return create(ListSessionsResponseSchema, {
          sessions: sessions.map((s) => sessionToPb(s, principal.sessionId)),
        });
      },
      async revokeSession(req, ctx) {
        await deps.sessions.revokeSession(principalOf(ctx.values), req.sessionId, ctx.values.get(kClient));
        return create(RevokeSessionResponseSchema, {});
      },
      async forgetDevice(req, ctx) {
        const forgotten = await deps.sessions.forgetDevices(
          principalOf(ctx.values),
          req.allDevices ? { all: true } : { credential: req.deviceCredential ?? "" },
          ctx.values.get(kClient),
        );
        return create(ForgetDeviceResponseSchema, { forgottenDevices: forgotten });
      },
      async changePassword(req, ctx) {
        const result = await deps.passwords.changePassword({
          principal: principalOf(ctx.values),
          currentPassword: req.currentPassword,
          newPassword: req.newPassword,
          client: ctx.values.get(kClient),
        });
        return create(ChangePasswordResponseSchema, {
          user: userToPb(result.user, result.passwordStatus),
          revokedSessions: result.revokedSessions,
        });
      },
    });
  };
}

/** A session as a person recognises it: browser and OS family, first and last seen, address. */
function sessionToPb(s: SessionListing, currentId: string): Session {
  return create(SessionSchema, {
    id: s.id,
    createdAt: rfc3339(s.createdAt),
    lastUsedAt: rfc3339(s.lastUsedAt),
    expiresAt: rfc3339(s.expiresAt),
    current: s.id === currentId,
    ...(s.provider === null ? {} : { provider: s.provider }),
    ...(s.browser === null ? {} : { browser: s.browser }),
    ...(s.os === null ? {} : { os: s.os }),
    ...(s.ip === null ? {} : { ip: s.ip }),
    ...(s.userAgent === null ? {} : { userAgent: s.userAgent }),
  });
}
