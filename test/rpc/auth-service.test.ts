import { createClient, Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";
import { AuthService } from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { DomainError } from "../../src/core/errors.ts";
import type { LoginResult, MfaChallengeResult } from "../../src/core/model.ts";
import type { SigninInput, SigninService } from "../../src/core/signin.ts";
import { silentLogger } from "../../src/logger.ts";
import { registerAuthService, type AuthServiceDeps } from "../../src/rpc/auth-service.ts";
import { ERROR_TABLE } from "../../src/rpc/error-codes.ts";
import { errorInterceptor } from "../../src/rpc/errors.ts";

/**
 * The rpc tier: the same registration function the server uses, over connect's in-memory
 * transport. Proves the proto <-> domain translation and the error mapping, with no network.
 */
const user = {
  id: "usr_1",
  username: "alice",
  email: "alice@example.com",
  emailVerified: true,
  phone: null,
  status: "active" as const,
  lockedUntil: null,
  mustChangePassword: false,
  createdAt: new Date("2026-01-15T10:30:00.123Z"),
};

function client(signin: (input: SigninInput) => Promise<LoginResult | MfaChallengeResult>) {
  const deps = { signin: { signinWithIdToken: signin } as SigninService } as AuthServiceDeps;
  const transport = createRouterTransport(registerAuthService(deps), {
    router: { interceptors: [errorInterceptor(silentLogger)] },
  });
  return createClient(AuthService, transport);
}

describe("AuthService translation", () => {
  it("maps a domain login result to LoginResponse, password fields at the top and in user alike", async () => {
    let seen: SigninInput | undefined;
    const c = client(async (input) => {
      seen = input;
      return {
        user,
        passwordStatus: { mustChangePassword: true, passwordExpiresIn: -2, passwordWarning: "expired" },
        accessToken: "at",
        refreshToken: "rt_x",
        expiresIn: 1800,
        sessionId: "ses_1",
      } as LoginResult;
    });
    const res = await c.signinWithIdToken({ idToken: "t", provider: "", nonce: "n", deviceId: " dev\u0001ice " });
    expect(seen).toMatchObject({ idToken: "t", provider: undefined, nonce: "n" });
    expect(seen?.client.deviceId).toBe("device");
    expect(res).toMatchObject({
      accessToken: "at",
      refreshToken: "rt_x",
      expiresIn: 1800,
      tokenType: "Bearer",
      requiresMfa: false,
      mustChangePassword: true,
      passwordExpiresIn: -2,
      passwordWarning: "expired",
      userId: "usr_1",
    });
    expect(res.user).toMatchObject({
      id: "usr_1",
      createdAt: "2026-01-15T10:30:00Z",
      mustChangePassword: true,
      passwordExpiresIn: -2,
      passwordWarning: "expired",
    });
    expect(res.challengeToken).toBeUndefined();
  });

  it("turns every domain error into its Connect code with the stable code as ErrorInfo reason", async () => {
    for (const [code, entry] of Object.entries(ERROR_TABLE)) {
      const c = client(async () => {
        throw new DomainError(code as keyof typeof ERROR_TABLE, `because ${code}`);
      });
      const err = ConnectError.from(await c.signinWithIdToken({ idToken: "t" }).catch((e: unknown) => e));
      expect(err.code, code).toBe(entry.code);
      expect(err.rawMessage).toBe(`because ${code}`);
      expect(err.findDetails(ErrorInfoSchema)[0]).toMatchObject({ reason: code, domain: "identity.v1" });
    }
  });

  it("answers an unexpected error as internal without its message", async () => {
    const c = client(async () => {
      throw new Error("connection string postgres://secret@db");
    });
    const err = ConnectError.from(await c.signinWithIdToken({ idToken: "t" }).catch((e: unknown) => e));
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).toBe("internal error");
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("internal");
  });
});
