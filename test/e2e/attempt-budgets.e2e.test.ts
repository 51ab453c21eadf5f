/**
 * Per-user budgets of wrong guesses (second-factor codes, current passwords: 10
 * per 15 minutes) hold under concurrency. The old code counted, then checked, then recorded: 200
 * guesses sent at once all read the same count and all were evaluated. Now each guess is reserved
 * in the database (under a per-user lock) before it is checked, so of 200 at once — over one
 * HTTP/2 connection, or spread over two replicas on one PostgreSQL — exactly 10 are evaluated and
 * the rest are refused with `rate_limited` and a Retry-After. (Budgets: 10 codes, 5 passwords.)
 */
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";
import { AuthService } from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { MfaService } from "../../gen/pb/identity/v1/mfa_service_pb.ts";
import { UserService } from "../../gen/pb/identity/v1/user_service_pb.ts";
import { totpCode } from "../../src/tokens/totp.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { postgresKind, type TestDatabase, testDatabaseKinds } from "../support/databases.ts";
import { startTestOidcProvider, type TestOidcProvider } from "../support/oidc-provider.ts";
import { type ServiceProcess, startServiceProcess } from "../support/service-process.ts";
import { devIdToken, restSignin, uniqueSub } from "../support/signin-e2e.ts";

const GUESSES = 200;
/** The default budgets: `mfa.max_code_failures` and `password.max_failed_changes`. */
const CODE_BUDGET = 10;
const PASSWORD_BUDGET = 5;

/** A six-digit code that is none of the codes valid around now (±1 step and some margin). */
function wrongCodeFor(secret: string): string {
  const valid = new Set([-2, -1, 0, 1, 2].map((k) => totpCode(secret, new Date(Date.now() + k * 30_000))));
  for (let n = 0; ; n++) {
    const code = String(n).padStart(6, "0");
    if (!valid.has(code)) return code;
  }
}

/** How each of the concurrent calls ended: the ErrorInfo reason (or "ok"), with the retry hint. */
async function outcomes(calls: Promise<unknown>[]) {
  const settled = await Promise.all(
    calls.map((c) =>
      c.then(
        () => ({ reason: "ok", retry: undefined as string | undefined }),
        (e: unknown) => {
          const err = ConnectError.from(e);
          const info = err.findDetails(ErrorInfoSchema)[0];
          return { reason: info?.reason ?? `connect:${Code[err.code]}`, retry: info?.metadata["retry_after_seconds"] };
        },
      ),
    ),
  );
  const tally: Record<string, number> = {};
  for (const s of settled) tally[s.reason] = (tally[s.reason] ?? 0) + 1;
  return { tally, settled };
}

/** A REST call with a Bearer token. */
async function authed(url: string, path: string, token: string, body: unknown) {
  const res = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Enrolls and confirms an authenticator with the session of `token` (right after its sign-in). */
async function enrollTotp(url: string, token: string): Promise<string> {
  const secret = (await authed(url, "/auth/mfa/totp/enroll", token, {})).body["secret"] as string;
  expect((await authed(url, "/auth/mfa/totp/confirm", token, { code: totpCode(secret, new Date()) })).status).toBe(200);
  return secret;
}

function expectBudgetHeld(
  tally: Record<string, number>,
  settled: { reason: string; retry: string | undefined }[],
  wrong: string,
  budget: number,
) {
  expect(tally).toEqual({ [wrong]: budget, rate_limited: GUESSES - budget });
  for (const s of settled.filter((x) => x.reason === "rate_limited")) {
    expect(Number(s.retry)).toBeGreaterThan(0);
    expect(Number(s.retry)).toBeLessThanOrEqual(900);
  }
}

for (const kind of testDatabaseKinds())
  describe(
    `budgets of wrong guesses on ${kind.dialect}: 200 at once over one HTTP/2 connection`,
    kind.suiteOptions,
    () => {
      let t: TestApp;
      beforeAll(async () => {
        // The per-address limit off: every guess here comes from 127.0.0.1, and the user's budget is under test.
        t = await startTestApp({ kind, config: { dev: true, rate_limit: { signin_failures_per_ip: 0 } } });
      });
      afterAll(async () => {
        await t?.close();
      });

      async function signin(sub: string) {
        const res = await restSignin(t.url, {
          id_token: await devIdToken(t.url, sub, { email: `${sub}@example.com` }),
          provider: "dev",
        });
        expect(res.status).toBe(200);
        return { token: res.body["access_token"] as string, userId: res.body["user_id"] as string };
      }
      const h2 = (token: string) =>
        createConnectTransport({
          baseUrl: t.url,
          httpVersion: "2",
          interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
        });

      it("wrong second-factor codes (MfaService.StepUp): 10 evaluated, 190 rate_limited", async () => {
        const u = await signin(uniqueSub("h2-codes"));
        const secret = await enrollTotp(t.url, u.token);
        // The sign-in's write (the hot path, on this dialect) stored auth_time; ConfirmTotp stamped mfa_at.
        const session = await t.app.database.client.session.findFirstOrThrow({ where: { userId: u.userId } });
        expect(session.authTime?.getTime()).toBe(session.createdAt.getTime());
        expect(session.mfaAt).not.toBeNull();
        expect(JSON.parse(session.amr)).toEqual(["fed", "otp", "mfa"]);
        const client: Client<typeof MfaService> = createClient(MfaService, h2(u.token));
        const code = wrongCodeFor(secret);
        const { tally, settled } = await outcomes(
          Array.from({ length: GUESSES }, () => client.stepUp({ method: "totp", code })),
        );
        expectBudgetHeld(tally, settled, "mfa_code_invalid", CODE_BUDGET);
        const db = t.app.database.client;
        expect(
          await db.auditEvent.count({ where: { userId: u.userId, type: "mfa.code_failed", code: "mfa_code_invalid" } }),
        ).toBe(CODE_BUDGET);
        expect(await db.auditEvent.count({ where: { code: "attempt_reserved" } })).toBe(0);
        // The right code is refused too while the budget is spent.
        const right = await client
          .stepUp({ method: "totp", code: totpCode(secret, new Date(Date.now() + 30_000)) })
          .catch((e: unknown) => ConnectError.from(e));
        expect((right as ConnectError).findDetails(ErrorInfoSchema)[0]?.reason).toBe("rate_limited");
      });

      it("wrong codes to six challenges at once (AuthService.VerifyMfa): the user's budget holds across challenges", async () => {
        const sub = uniqueSub("h2-challenges");
        const first = await restSignin(t.url, {
          id_token: await devIdToken(t.url, sub, { email: `${sub}@example.com` }),
          provider: "dev",
          device_id: `${sub}-A`,
        });
        const secret = await enrollTotp(t.url, first.body["access_token"] as string);
        const userId = first.body["user_id"] as string;
        // Six new devices, six challenges: 30 attempts allowed by the challenges, 10 by the budget.
        const challenges: { token: string; device: string }[] = [];
        for (let i = 0; i < 6; i++) {
          const device = `${sub}-new-${i}`;
          const res = await restSignin(t.url, {
            id_token: await devIdToken(t.url, sub, { email: `${sub}@example.com` }),
            provider: "dev",
            device_id: device,
          });
          expect(res.body["requires_mfa"]).toBe(true);
          challenges.push({ token: res.body["challenge_token"] as string, device });
        }
        const client = createClient(AuthService, createConnectTransport({ baseUrl: t.url, httpVersion: "2" }));
        const code = wrongCodeFor(secret);
        const { tally } = await outcomes(
          challenges.flatMap((c) =>
            Array.from({ length: 5 }, () =>
              client.verifyMfa({ challengeToken: c.token, method: "totp", code, deviceId: c.device }),
            ),
          ),
        );
        expect((tally["mfa_code_invalid"] ?? 0) + (tally["challenge_exhausted"] ?? 0)).toBe(CODE_BUDGET);
        expect(tally["rate_limited"]).toBe(30 - CODE_BUDGET);
        const counted = await t.app.database.client.auditEvent.count({
          where: {
            userId,
            OR: [{ type: "mfa.challenge_exhausted" }, { type: "mfa.verify_failed", code: "mfa_code_invalid" }],
          },
        });
        expect(counted).toBe(CODE_BUDGET);
      });

      it("wrong current passwords (UserService.ChangePassword): 5 evaluated, 195 rate_limited", async () => {
        const u = await signin(uniqueSub("h2-passwords"));
        expect(
          (await authed(t.url, "/auth/password/change", u.token, { new_password: "the first real passphrase" })).status,
        ).toBe(200);
        const client = createClient(UserService, h2(u.token));
        const { tally, settled } = await outcomes(
          Array.from({ length: GUESSES }, (_, i) =>
            client.changePassword({
              currentPassword: `wrong guess number ${i}`,
              newPassword: "a brand new passphrase",
            }),
          ),
        );
        expectBudgetHeld(tally, settled, "password_incorrect", PASSWORD_BUDGET);
        expect(
          await t.app.database.client.auditEvent.count({
            where: { userId: u.userId, type: "password.change_failed", code: "password_incorrect" },
          }),
        ).toBe(PASSWORD_BUDGET);
      });
    },
  );

const kind = postgresKind();

describe("budgets of wrong guesses: 200 at once spread over two replicas on one PostgreSQL", kind.suiteOptions, () => {
  let op: TestOidcProvider;
  let db: TestDatabase;
  let replicas: ServiceProcess[] = [];

  beforeAll(async () => {
    op = await startTestOidcProvider();
    db = await kind.create();
    const config = {
      tokens: { issuer: "https://identity.test" },
      providers: { acme: { issuer: op.issuer, client_ids: [op.clientId] } },
      // The cheapest hash the config allows (OWASP's minimum): the guesses, not Argon2, are under test.
      password: { argon2: { memory_kib: 7168, time_cost: 5 } },
    };
    const env = { DATABASE_URL: db.url, KEY_ENCRYPTION_KEY: Buffer.alloc(32, 5).toString("base64") };
    replicas = await Promise.all([startServiceProcess({ config, env }), startServiceProcess({ config, env })]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await op?.close();
    await db?.drop();
  });

  async function signin(sub: string) {
    const { idToken } = await op.obtainIdToken({ sub, email: `${sub}@example.com` });
    const res = await restSignin(replicas[0]!.url, { id_token: idToken, provider: "acme" });
    expect(res.status).toBe(200);
    return { token: res.body["access_token"] as string, userId: res.body["user_id"] as string };
  }
  /** One HTTP/2 connection to each replica; call `i` goes to replica `i % 2`. */
  function clients<S extends typeof MfaService | typeof UserService>(service: S, token: string): Client<S>[] {
    return replicas.map((r) =>
      createClient(
        service,
        createConnectTransport({
          baseUrl: r.url,
          httpVersion: "2",
          interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
        }),
      ),
    );
  }
  async function failures(userId: string, type: string, code: string): Promise<number> {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      return Number(
        (
          await c.query("SELECT count(*) AS n FROM audit_events WHERE user_id = $1 AND type = $2 AND code = $3", [
            userId,
            type,
            code,
          ])
        ).rows[0].n,
      );
    } finally {
      await c.end();
    }
  }

  it("wrong second-factor codes: 10 evaluated across both replicas", async () => {
    const u = await signin(uniqueSub("rep-codes"));
    const secret = await enrollTotp(replicas[0]!.url, u.token);
    const code = wrongCodeFor(secret);
    const both = clients(MfaService, u.token);
    const { tally, settled } = await outcomes(
      Array.from({ length: GUESSES }, (_, i) => both[i % 2]!.stepUp({ method: "totp", code })),
    );
    expectBudgetHeld(tally, settled, "mfa_code_invalid", CODE_BUDGET);
    expect(await failures(u.userId, "mfa.code_failed", "mfa_code_invalid")).toBe(CODE_BUDGET);
  });

  it("wrong current passwords: 5 evaluated across both replicas", async () => {
    const u = await signin(uniqueSub("rep-passwords"));
    expect(
      (await authed(replicas[1]!.url, "/auth/password/change", u.token, { new_password: "the first real passphrase" }))
        .status,
    ).toBe(200);
    const both = clients(UserService, u.token);
    const { tally, settled } = await outcomes(
      Array.from({ length: GUESSES }, (_, i) =>
        both[i % 2]!.changePassword({ currentPassword: `wrong guess ${i}`, newPassword: "a brand new passphrase" }),
      ),
    );
    expectBudgetHeld(tally, settled, "password_incorrect", PASSWORD_BUDGET);
    expect(await failures(u.userId, "password.change_failed", "password_incorrect")).toBe(PASSWORD_BUDGET);
  });
});
