import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { type ServiceProcess, startServiceProcess } from "../support/service-process.ts";
import { postgresKind, type TestDatabase } from "../support/databases.ts";
import { startTestOidcProvider, type TestOidcProvider } from "../support/oidc-provider.ts";

const kind = postgresKind();

/**
 * Two service processes share one PostgreSQL database, as replicas behind a load balancer do.
 * Requests alternate between them; state (users, sessions, refresh tokens, signing keys) must
 * behave as one service.
 */
describe("two replicas on one PostgreSQL", kind.suiteOptions, () => {
  let op: TestOidcProvider;
  let db: TestDatabase;
  let replicas: ServiceProcess[] = [];
  const kek = Buffer.alloc(32, 3).toString("base64");

  beforeAll(async () => {
    op = await startTestOidcProvider();
    db = await kind.create();
    const config = {
      tokens: { issuer: "https://identity.test" },
      providers: { acme: { issuer: op.issuer, client_ids: [op.clientId] } },
    };
    const env = { DATABASE_URL: db.url, KEY_ENCRYPTION_KEY: kek };
    // Both start at the same moment: migrations run once under the advisory lock.
    replicas = await Promise.all([startServiceProcess({ config, env }), startServiceProcess({ config, env })]);
  });

  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await op?.close();
    await db?.drop();
  });

  const post = (base: string, path: string, body: unknown) =>
    fetch(`${base}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });

  async function count(sql: string): Promise<number> {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      return Number((await c.query(sql)).rows[0].n);
    } finally {
      await c.end();
    }
  }

  it("migrated once although both replicas started together", async () => {
    expect(await count(`SELECT count(*) AS n FROM "_migrations"`)).toBeGreaterThanOrEqual(2);
    expect(await count(`SELECT count(*) - count(DISTINCT name) AS n FROM "_migrations"`)).toBe(0);
  });

  it("many concurrent first sign-ins of one new identity create exactly one user and one link", async () => {
    // Each sign-in with a token of its own (a token signs in once).
    const tokens = await Promise.all(
      Array.from({ length: 16 }, () => op.obtainIdToken({ sub: "race-sub", email: "race@example.com" })),
    );
    const responses = await Promise.all(
      tokens.map(({ idToken }, i) =>
        post(replicas[i % 2]!.url, "/auth/id-token/signin", { id_token: idToken, provider: "acme" }),
      ),
    );
    const bodies = (await Promise.all(responses.map((r) => r.json()))) as { user_id?: string; code?: string }[];
    expect(responses.map((r) => r.status)).toEqual(Array(16).fill(200));
    expect(new Set(bodies.map((b) => b.user_id)).size).toBe(1);
    expect(await count(`SELECT count(*) AS n FROM identities WHERE subject = 'race-sub'`)).toBe(1);
    expect(await count(`SELECT count(*) AS n FROM users WHERE email = 'race@example.com'`)).toBe(1);
    expect(await count(`SELECT count(*) AS n FROM sessions WHERE user_id = '${bodies[0]!.user_id}'`)).toBe(16);
  });

  it("one ID token presented to both replicas at once signs in exactly once; the rest are id_token_replayed", async () => {
    const { idToken } = await op.obtainIdToken({ sub: "replay-sub", email: "replay@example.com" });
    const responses = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        post(replicas[i % 2]!.url, "/auth/id-token/signin", { id_token: idToken, provider: "acme" }),
      ),
    );
    const bodies = (await Promise.all(responses.map((r) => r.json()))) as { user_id?: string; code?: string }[];
    expect(responses.filter((r) => r.status === 200)).toHaveLength(1);
    expect(bodies.filter((b) => b.code === "id_token_replayed")).toHaveLength(11);
    expect(responses.filter((r) => r.status !== 200).every((r) => r.status === 401)).toBe(true);
    expect(
      await count(
        `SELECT count(*) AS n FROM sessions s JOIN identities i ON i.user_id = s.user_id WHERE i.subject = 'replay-sub'`,
      ),
    ).toBe(1);
    expect(
      await count(`SELECT count(*) AS n FROM audit_events WHERE code = 'id_token_replayed' AND subject = 'replay-sub'`),
    ).toBe(11);
  });

  it("one refresh token presented to both replicas at once: exactly one wins", async () => {
    const { idToken } = await op.obtainIdToken({ sub: "refresh-race" });
    const signin = (await (
      await post(replicas[0]!.url, "/auth/id-token/signin", { id_token: idToken, provider: "acme" })
    ).json()) as { refresh_token: string };
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        post(replicas[i % 2]!.url, "/auth/token/refresh", { refresh_token: signin.refresh_token }),
      ),
    );
    const codes = await Promise.all(
      results.map(async (r) => (r.status === 200 ? "ok" : ((await r.json()) as { code: string }).code)),
    );
    expect(codes.filter((c) => c === "ok")).toHaveLength(1);
    expect(codes.filter((c) => c === "refresh_token_reused")).toHaveLength(5);
  });

  it("an access token from one replica is accepted by the other, and sign-out on one is seen by both", async () => {
    const { idToken } = await op.obtainIdToken({ sub: "cross" });
    const signin = (await (
      await post(replicas[0]!.url, "/auth/id-token/signin", { id_token: idToken, provider: "acme" })
    ).json()) as {
      access_token: string;
      user_id: string;
    };
    const auth = { authorization: `Bearer ${signin.access_token}` };
    const me = await fetch(`${replicas[1]!.url}/auth/me`, { headers: auth });
    expect(me.status).toBe(200);
    expect(((await me.json()) as { id: string }).id).toBe(signin.user_id);
    const jwksA = await (await fetch(`${replicas[0]!.url}/.well-known/jwks.json`)).json();
    const jwksB = await (await fetch(`${replicas[1]!.url}/.well-known/jwks.json`)).json();
    expect(jwksA).toEqual(jwksB);
    const out = await fetch(`${replicas[1]!.url}/auth/signout`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: "{}",
    });
    expect(((await out.json()) as { revoked_sessions: number }).revoked_sessions).toBe(1);
    const after = await fetch(`${replicas[0]!.url}/auth/me`, { headers: auth });
    expect(after.status).toBe(401);
    expect(((await after.json()) as { code: string }).code).toBe("session_revoked");
  });

  it("SIGTERM drains and exits cleanly", async () => {
    const r = replicas.pop()!;
    expect(await r.stop()).toBe(0);
    expect(r.logs()).toContain('"msg":"stopped"');
  });
});
