import { createHash, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Sqlite from "better-sqlite3";
import pg from "pg";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestDatabase, type TestDatabaseKind, testDatabaseKinds } from "../support/databases.ts";
import { type ServiceProcess, startServiceProcess } from "../support/service-process.ts";
import { devIdToken } from "../support/signin-e2e.ts";

/**
 * Nothing acknowledged is lost: every sign-in answered 200 has its session, refresh token and
 * audit row committed before the answer. The real service runs as a child process under a
 * sign-in load (new users, returning users, and new identities linked to existing users by
 * verified e-mail), is SIGKILLed while requests are in flight, and is restarted on the same
 * database. Then every acknowledged sign-in must be there, its refresh token must still work, and
 * nothing may be half-written (a session without its refresh token, a user without its identity,
 * an audit row without its session, ...).
 *
 * Written against the public API and the schema (prisma/schema.prisma `@@map`/`@map` names),
 * read directly from the database, not through src/store, so it holds whatever the store layer
 * does internally.
 *
 * A SIGKILL leaves the operating system's page cache intact, so this checks that the service
 * answers only after its commit, not that the database fsyncs (the test PostgreSQL cluster runs
 * with fsync off).
 */

/** Concurrent sign-in loops. */
const CONCURRENCY = 16;
/** The process is killed once this many sign-ins were answered 200 ... */
const ACKS_BEFORE_KILL = 150;
/** ... or after this long, whichever comes first. */
const LOAD_TIME_LIMIT_MS = 20_000;
/** Fewer acknowledged sign-ins than this would make the run meaningless. */
const MIN_ACKS = 30;
/** Acknowledged refresh tokens exchanged over the restarted service. */
const REFRESH_SAMPLE = 24;

type PlanKind = "new" | "returning" | "link";

interface Ack {
  kind: PlanKind;
  requestId: string;
  sub: string;
  email: string;
  /** The user the sign-in must land on (returning, link); null for a new user. */
  expectedUserId: string | null;
  userId: string;
  sessionId: string;
  refreshToken: string;
}

interface Snapshot {
  users: { id: string }[];
  identities: { id: string; user_id: string; subject: string }[];
  sessions: { id: string; user_id: string; identity_id: string | null; revoked_at: unknown }[];
  refreshTokens: { id: string; session_id: string; token_hash: string; used_at: unknown }[];
  succeededAudits: { id: string; user_id: string | null; request_id: string | null }[];
}

const SNAPSHOT_QUERIES: Record<keyof Snapshot, string> = {
  users: "SELECT id FROM users",
  identities: "SELECT id, user_id, subject FROM identities",
  sessions: "SELECT id, user_id, identity_id, revoked_at FROM sessions",
  refreshTokens: "SELECT id, session_id, token_hash, used_at FROM refresh_tokens",
  succeededAudits: "SELECT id, user_id, request_id FROM audit_events WHERE type = 'signin.succeeded'",
};

/** Every row the checks need, read straight from the database (small: a few hundred rows). */
async function readSnapshot(dialect: TestDatabaseKind["dialect"], url: string): Promise<Snapshot> {
  const out = {} as Record<keyof Snapshot, unknown[]>;
  if (dialect === "sqlite") {
    const db = new Sqlite(url.slice("file:".length), { fileMustExist: true });
    try {
      for (const [key, sql] of Object.entries(SNAPSHOT_QUERIES)) out[key as keyof Snapshot] = db.prepare(sql).all();
    } finally {
      db.close();
    }
  } else {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      for (const [key, sql] of Object.entries(SNAPSHOT_QUERIES))
        out[key as keyof Snapshot] = (await client.query(sql)).rows;
    } finally {
      await client.end();
    }
  }
  return out as unknown as Snapshot;
}

/** As the service stores refresh tokens: SHA-256 of the token, base64url. */
function tokenHash(token: string): string {
  return createHash("sha256").update(token).digest("base64url");
}

function countBy<T>(items: readonly T[], key: (item: T) => string | null): Map<string, number> {
  const m = new Map<string, number>();
  for (const item of items) {
    const k = key(item);
    if (k !== null) m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

const postJson = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });

for (const kind of testDatabaseKinds()) {
  describe(`crash durability (${kind.dialect})`, kind.suiteOptions, () => {
    let db: TestDatabase;
    let dir: string;
    let restarted: ServiceProcess | undefined;
    let killedService: ServiceProcess | undefined;
    const env = (): Record<string, string> => ({ DATABASE_URL: db.url });
    const config = {
      tokens: { issuer: "https://identity.test" },
      // Every sign-in opens a session (risk is still assessed and audited), and the failure
      // limit cannot interfere with the load.
      mfa: { require_at: "never" },
      rate_limit: { signin_failures_per_ip: 0 },
    };

    beforeAll(async () => {
      db = await kind.create();
      // Config file and data dir (key-encryption key) of our own: they outlive the killed process.
      dir = mkdtempSync(join(tmpdir(), "identity-crash-"));
    });

    afterAll(async () => {
      await restarted?.stop();
      if (
        killedService !== undefined &&
        killedService.child.exitCode === null &&
        killedService.child.signalCode === null
      ) {
        killedService.child.kill("SIGKILL");
      }
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
      await db?.drop();
    });

    it("every sign-in answered 200 has its session, refresh token and audit row committed before the answer", async () => {
      const started = Date.now();
      const service = await startServiceProcess({ config, env: env(), args: ["--dev"], dir });
      killedService = service;
      const exited = new Promise<NodeJS.Signals | null>((resolve) =>
        service.child.once("exit", (_code, signal) => resolve(signal)),
      );

      // ---- Load, then SIGKILL mid-flight -------------------------------------------------------
      const acks: Ack[] = [];
      const unexpectedAnswers: { status: number; body: string; kind: PlanKind }[] = [];
      const unexpectedErrors: string[] = [];
      /** Identities acknowledged so far: returning sign-ins and links pick from these. */
      const known: { sub: string; email: string; userId: string }[] = [];
      let nextSub = 0;
      let inFlight = 0;
      let inFlightAtKill = -1;
      let killed = false;
      const kill = () => {
        if (killed) return;
        killed = true;
        inFlightAtKill = inFlight;
        service.child.kill("SIGKILL");
      };
      const timeBound = setTimeout(kill, LOAD_TIME_LIMIT_MS);

      const plan = (): { kind: PlanKind; sub: string; email: string; expectedUserId: string | null } => {
        const r = Math.random();
        if (known.length >= 8 && r < 0.35) {
          const k = known[Math.floor(Math.random() * known.length)]!;
          return { kind: "returning", sub: k.sub, email: k.email, expectedUserId: k.userId };
        }
        if (known.length >= 8 && r < 0.5) {
          // A new identity whose verified e-mail belongs to an existing user: linked to that user.
          const k = known[Math.floor(Math.random() * known.length)]!;
          return { kind: "link", sub: `crash-${nextSub++}-link`, email: k.email, expectedUserId: k.userId };
        }
        const sub = `crash-${nextSub++}`;
        return { kind: "new", sub, email: `${sub}@example.test`, expectedUserId: null };
      };

      const loop = async () => {
        while (!killed) {
          const p = plan();
          try {
            const id_token = await devIdToken(service.url, p.sub, { email: p.email });
            if (killed) break;
            const requestId = `crash-${randomUUID()}`;
            inFlight++;
            let status: number;
            let text: string;
            try {
              const res = await postJson(
                `${service.url}/auth/id-token/signin`,
                { id_token, provider: "dev" },
                { "x-request-id": requestId },
              );
              status = res.status;
              text = await res.text();
            } finally {
              inFlight--;
            }
            // The whole answer arrived: from here on the service has acknowledged it (or refused it).
            if (status !== 200) {
              unexpectedAnswers.push({ status, body: text.slice(0, 300), kind: p.kind });
              continue;
            }
            const body = JSON.parse(text) as { user_id: string; access_token: string; refresh_token: string };
            const ack: Ack = {
              ...p,
              requestId,
              userId: body.user_id,
              sessionId: String(decodeJwt(body.access_token)["sid"]),
              refreshToken: body.refresh_token,
            };
            acks.push(ack);
            if (p.kind !== "returning") known.push({ sub: p.sub, email: p.email, userId: ack.userId });
            if (acks.length >= ACKS_BEFORE_KILL) kill();
          } catch (e) {
            // Cut off by the kill (connection reset or refused): not acknowledged, nothing to
            // check. `killed` is set before the signal is sent, so an error before it is real.
            if (!killed) unexpectedErrors.push(String(e));
          }
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, loop));
      clearTimeout(timeBound);
      expect(await exited).toBe("SIGKILL");
      const loadMs = Date.now() - started;

      expect(unexpectedAnswers).toEqual([]);
      expect(unexpectedErrors).toEqual([]);
      expect(acks.length).toBeGreaterThanOrEqual(MIN_ACKS);
      // The kill must land on sign-ins in flight, or it proves nothing about them.
      expect(inFlightAtKill).toBeGreaterThan(0);
      expect(acks.filter((a) => a.expectedUserId !== null && a.userId !== a.expectedUserId)).toEqual([]);

      // ---- Restart on the same database ---------------------------------------------------------
      restarted = await startServiceProcess({ config, env: env(), args: ["--dev"], dir });
      const snap = await readSnapshot(kind.dialect, db.url);

      // Every acknowledged sign-in is there, whole.
      const sessions = new Map(snap.sessions.map((s) => [s.id, s]));
      const tokensByHash = new Map(snap.refreshTokens.map((t) => [t.token_hash, t]));
      const auditsByRequest = new Map(
        snap.succeededAudits.filter((a) => a.request_id !== null).map((a) => [a.request_id!, a]),
      );
      const identitiesBySubject = new Map(snap.identities.map((i) => [i.subject, i]));
      const userIds = new Set(snap.users.map((u) => u.id));
      const lost = (check: (a: Ack) => boolean) =>
        acks.filter((a) => !check(a)).map((a) => `${a.kind} ${a.sub} ${a.sessionId}`);
      expect
        .soft(
          lost((a) => userIds.has(a.userId)),
          "acknowledged users missing",
        )
        .toEqual([]);
      expect
        .soft(
          lost((a) => identitiesBySubject.get(a.sub)?.user_id === a.userId),
          "acknowledged identities missing",
        )
        .toEqual([]);
      expect
        .soft(
          lost((a) => sessions.get(a.sessionId)?.user_id === a.userId && sessions.get(a.sessionId)?.revoked_at == null),
          "acknowledged sessions missing",
        )
        .toEqual([]);
      expect
        .soft(
          lost((a) => {
            const t = tokensByHash.get(tokenHash(a.refreshToken));
            return t !== undefined && t.session_id === a.sessionId && t.used_at == null;
          }),
          "acknowledged refresh tokens missing",
        )
        .toEqual([]);
      expect
        .soft(
          lost((a) => auditsByRequest.get(a.requestId)?.user_id === a.userId),
          "signin.succeeded audit rows missing",
        )
        .toEqual([]);

      // Nothing half-written, acknowledged or not. Every user, identity and session in this
      // database comes from a sign-in of this test, and each such sign-in (MFA off) writes user
      // (if new), identity (if new), session, refresh token and audit row together, or nothing.
      const sessionsWithToken = new Set(snap.refreshTokens.map((t) => t.session_id));
      const identityUsers = new Set(snap.identities.map((i) => i.user_id));
      const sessionUsers = new Set(snap.sessions.map((s) => s.user_id));
      const sessionIdentities = new Set(snap.sessions.map((s) => s.identity_id));
      expect
        .soft(
          snap.sessions.filter((s) => !sessionsWithToken.has(s.id)).map((s) => s.id),
          "sessions without a refresh token",
        )
        .toEqual([]);
      expect
        .soft(
          snap.refreshTokens.filter((t) => !sessions.has(t.session_id)).map((t) => t.id),
          "refresh tokens without a session",
        )
        .toEqual([]);
      expect
        .soft(
          snap.sessions.filter((s) => !userIds.has(s.user_id)).map((s) => s.id),
          "sessions without a user",
        )
        .toEqual([]);
      expect
        .soft(
          snap.identities.filter((i) => !userIds.has(i.user_id)).map((i) => i.id),
          "identities without a user",
        )
        .toEqual([]);
      expect
        .soft(
          snap.users.filter((u) => !identityUsers.has(u.id)).map((u) => u.id),
          "users without an identity",
        )
        .toEqual([]);
      expect
        .soft(
          snap.users.filter((u) => !sessionUsers.has(u.id)).map((u) => u.id),
          "users without a session",
        )
        .toEqual([]);
      expect
        .soft(
          snap.identities.filter((i) => !sessionIdentities.has(i.id)).map((i) => i.id),
          "identities without a session",
        )
        .toEqual([]);
      // One signin.succeeded row per session, per user: neither an audit row whose session is
      // missing nor a session whose audit row is. (The row's detail does not name the session.)
      const auditsPerUser = countBy(snap.succeededAudits, (a) => a.user_id);
      const sessionsPerUser = countBy(snap.sessions, (s) => s.user_id);
      const mismatched = [...new Set([...auditsPerUser.keys(), ...sessionsPerUser.keys()])]
        .filter((u) => auditsPerUser.get(u) !== sessionsPerUser.get(u))
        .map((u) => `${u}: ${auditsPerUser.get(u) ?? 0} signin.succeeded, ${sessionsPerUser.get(u) ?? 0} sessions`);
      expect.soft(mismatched, "signin.succeeded audit rows vs sessions per user").toEqual([]);
      expect
        .soft(
          snap.succeededAudits.filter((a) => a.user_id === null || !userIds.has(a.user_id)).map((a) => a.id),
          "signin.succeeded audit rows without a user",
        )
        .toEqual([]);

      // (Soft assertions above: a failure reports every kind of loss at once.)
      // ---- Acknowledged refresh tokens still work --------------------------------------------
      // The last ones answered before the kill (closest to it), and a spread over the rest.
      const stride = Math.max(1, Math.floor(acks.length / (REFRESH_SAMPLE - 6)));
      const sample = [...new Set([...acks.slice(-6), ...acks.filter((_, i) => i % stride === 0)])].slice(
        0,
        REFRESH_SAMPLE + 6,
      );
      const refreshed = await Promise.all(
        sample.map(async (a) => {
          const res = await postJson(`${restarted!.url}/auth/token/refresh`, { refresh_token: a.refreshToken });
          const body = (await res.json()) as { user_id?: string; access_token?: string; code?: string };
          const sid = body.access_token === undefined ? null : decodeJwt(body.access_token)["sid"];
          return {
            sub: a.sub,
            status: res.status,
            code: body.code,
            userOk: body.user_id === a.userId,
            sidOk: sid === a.sessionId,
          };
        }),
      );
      expect(
        refreshed.filter((r) => r.status !== 200 || !r.userOk || !r.sidOk),
        "acknowledged refresh tokens refused after the restart",
      ).toEqual([]);

      console.info(
        `[crash-durability ${kind.dialect}] ${acks.length} acknowledged (` +
          `${acks.filter((a) => a.kind === "new").length} new, ${acks.filter((a) => a.kind === "returning").length} returning, ` +
          `${acks.filter((a) => a.kind === "link").length} link), ${inFlightAtKill} sign-ins in flight at SIGKILL, ` +
          `${snap.sessions.length} sessions committed, ${sample.length} refreshed; load+kill ${loadMs} ms, total ${Date.now() - started} ms`,
      );
    }, 120_000);
  });
}
