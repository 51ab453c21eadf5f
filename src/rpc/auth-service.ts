import { create } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import type { LoginResult, UserRecord } from "../core/model.ts";
import type { SessionService } from "../core/sessions.ts";
import type { SigninService } from "../core/signin.ts";
import {
  AuthService,
  LoginResponseSchema,
  type LoginResponse,
  SignOutResponseSchema,
  type SigninWithIdTokenRequest,
  type User,
  UserSchema,
} from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { kClient, kPrincipal } from "./context.ts";

export interface AuthServiceDeps {
  signin: SigninService;
  sessions: SessionService;
}

/** Registers AuthService. Handlers only translate proto <-> domain; the core decides. */
export function registerAuthService(deps: AuthServiceDeps) {
  return (router: ConnectRouter) => {
    router.service(AuthService, {
      async signinWithIdToken(req: SigninWithIdTokenRequest, ctx: HandlerContext): Promise<LoginResponse> {
        const client = ctx.values.get(kClient);
        const result = await deps.signin.signinWithIdToken({
          idToken: req.idToken,
          provider: emptyToUndefined(req.provider),
          nonce: req.nonce,
          client: { ...client, deviceId: clipDeviceId(req.deviceId) ?? client.deviceId },
        });
        return loginResultToPb(result);
      },
      async refreshToken(req, ctx) {
        return loginResultToPb(await deps.sessions.refresh(req.refreshToken, ctx.values.get(kClient)));
      },
      async signOut(req, ctx) {
        const principal = ctx.values.get(kPrincipal);
        const revoked = await deps.sessions.signOut(
          principal !== null ? { principal } : { refreshToken: req.refreshToken ?? "" },
          req.allSessions,
          ctx.values.get(kClient),
        );
        return create(SignOutResponseSchema, { revokedSessions: revoked });
      },
    });
  };
}

export function loginResultToPb(result: LoginResult): LoginResponse {
  const user = userToPb(result.user);
  return create(LoginResponseSchema, {
    accessToken: result.accessToken,
    refreshToken: result.refreshToken,
    expiresIn: result.expiresIn,
    tokenType: "Bearer",
    requiresMfa: false,
    mustChangePassword: user.mustChangePassword,
    user,
    userId: result.user.id,
  });
}

export function userToPb(user: UserRecord): User {
  return create(UserSchema, {
    id: user.id,
    username: user.username,
    status: user.status,
    createdAt: rfc3339(user.createdAt),
    mustChangePassword: user.mustChangePassword,
    ...(user.email === null ? {} : { email: user.email }),
    ...(user.phone === null ? {} : { phone: user.phone }),
  });
}

/** RFC 3339 in UTC without fractional seconds, as in the seed ("2026-01-15T10:30:00Z"). */
export function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function emptyToUndefined(s: string | undefined): string | undefined {
  return s === undefined || s === "" ? undefined : s;
}

/** Device identifiers are opaque client strings; keep them short and printable. */
export function clipDeviceId(s: string | undefined | null): string | null {
  if (s === undefined || s === null) return null;
  const clean = s.replace(/[^\x21-\x7e]/g, "").slice(0, 128);
  return clean === "" ? null : clean;
}
