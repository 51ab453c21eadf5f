import { create } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import type { MfaService } from "../core/mfa.ts";
import type { LoginResult, MfaChallengeResult, PasswordStatus, RiskSummary, UserRecord } from "../core/model.ts";
import type { SessionService } from "../core/sessions.ts";
import type { SigninService } from "../core/signin.ts";
import type { NonceService } from "../core/nonces.ts";
import {
  AuthService,
  BeginWebauthnMfaResponseSchema,
  CreateNonceResponseSchema,
  LoginResponseSchema,
  type LoginResponse,
  RiskAssessmentSchema,
  SignOutResponseSchema,
  type SigninWithIdTokenRequest,
  type User,
  UserSchema,
} from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { kClient, kPrincipal } from "./context.ts";

export interface AuthServiceDeps {
  signin: SigninService;
  nonces: NonceService;
  sessions: SessionService;
  mfa: MfaService;
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
          deviceCredential: req.deviceCredential,
        });
        return "challengeToken" in result ? challengeToPb(result) : loginResultToPb(result);
      },
      async verifyMfa(req, ctx) {
        const client = ctx.values.get(kClient);
        return loginResultToPb(
          await deps.mfa.verify({
            challengeToken: req.challengeToken,
            method: req.method,
            code: req.code,
            assertion: req.webauthnAssertion,
            trustDevice: req.trustDevice,
            client: { ...client, deviceId: clipDeviceId(req.deviceId) ?? client.deviceId },
          }),
        );
      },
      async beginWebauthnMfa(req, ctx) {
        const client = ctx.values.get(kClient);
        const options = await deps.mfa.beginWebauthn(req.challengeToken, {
          ...client,
          deviceId: clipDeviceId(req.deviceId) ?? client.deviceId,
        });
        return create(BeginWebauthnMfaResponseSchema, { options });
      },
      async createNonce(req, ctx) {
        const client = ctx.values.get(kClient);
        const issued = await deps.nonces.issue({ ...client, deviceId: clipDeviceId(req.deviceId) ?? client.deviceId });
        return create(CreateNonceResponseSchema, {
          nonce: issued.nonce,
          expiresIn: issued.expiresIn,
          nonceSha256: issued.sha256,
        });
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

/**
 * The one translation of a login result, for every path that answers a LoginResponse (ID-token
 * sign-in, refresh, MFA completion): the password fields come from `result.passwordStatus` and
 * are the same at the top level and inside `user`.
 */
function loginResultToPb(result: LoginResult): LoginResponse {
  const user = userToPb(result.user, result.passwordStatus);
  return create(LoginResponseSchema, {
    accessToken: result.accessToken,
    refreshToken: result.refreshToken,
    expiresIn: result.expiresIn,
    tokenType: "Bearer",
    requiresMfa: false,
    ...passwordFieldsToPb(result.passwordStatus),
    ...riskToPb(result.risk),
    ...(result.mfaCheckReason === undefined ? {} : { mfaCheckReason: result.mfaCheckReason }),
    ...(result.deviceCredential === undefined ? {} : { deviceCredential: result.deviceCredential }),
    user,
    userId: result.user.id,
  });
}

/**
 * A sign-in stopped for MFA: the challenge and why, and no token. Before the second factor the
 * caller learns only what it needs to continue: nothing about the account (no user, no user ID,
 * no e-mail, phone or username, no password state). Whoever holds a stolen or phished ID token
 * learns nothing personal from it.
 */
function challengeToPb(result: MfaChallengeResult): LoginResponse {
  return create(LoginResponseSchema, {
    challengeToken: result.challengeToken,
    expiresIn: 0,
    tokenType: "Bearer",
    requiresMfa: true,
    requiredMfaMethods: result.methods,
    mfaCheckReason: result.reason,
    ...riskToPb(result.risk),
  });
}

function riskToPb(risk: RiskSummary | undefined) {
  if (risk === undefined) return {};
  return {
    riskLevel: risk.level,
    riskAssessment: create(RiskAssessmentSchema, {
      level: risk.level,
      score: risk.score,
      requireMfa: risk.requireMfa,
      recommendedMfaMethods: risk.recommendedMethods,
      signals: risk.signals,
    }),
  };
}

/** A user with its password fields, as in LoginResponse.user and GetCurrentUser. */
export function userToPb(user: UserRecord, password: PasswordStatus): User {
  return create(UserSchema, {
    id: user.id,
    username: user.username,
    status: user.status,
    createdAt: rfc3339(user.createdAt),
    ...passwordFieldsToPb(password),
    ...(user.email === null ? {} : { email: user.email }),
    ...(user.phone === null ? {} : { phone: user.phone }),
  });
}

/** `must_change_password` always; the optional two only when the core set them. */
function passwordFieldsToPb(p: PasswordStatus) {
  return {
    mustChangePassword: p.mustChangePassword,
    ...(p.passwordExpiresIn === undefined ? {} : { passwordExpiresIn: p.passwordExpiresIn }),
    ...(p.passwordWarning === undefined ? {} : { passwordWarning: p.passwordWarning }),
  };
}

/** RFC 3339 in UTC without fractional seconds ("2026-01-15T10:30:00Z"), as the API documents its times. */
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
