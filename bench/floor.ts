/**
 * The floor: the least a sign-in with an external ID token can cost, written directly on
 * node:http + jose + better-sqlite3 (or pg) with prepared statements. It does the same essential
 * work per sign-in as the service, and nothing else:
 *
 *  - parse the JSON body `{id_token, provider}`;
 *  - verify the RS256 ID token with jwtVerify against the issuer's JWKS (fetched once, then a
 *    local key set) with the bench's claim rules (issuer, audience, RS256, 60 s tolerance,
 *    required sub/exp/iat);
 *  - in one transaction: find-or-create the user by (iss, sub) (users + identities), insert a
 *    session, a SHA-256-hashed random (32 bytes) refresh token and an audit row;
 *  - sign an ES256 access token (key generated at start);
 *  - answer a LoginResponse-like JSON.
 *
 *   PORT=0 HOST=127.0.0.1 node bench/floor.ts --issuer URL [--db sqlite --data-dir DIR | --db postgresql]
 *
 * With --db postgresql the database is BENCH_DATABASE_URL, used through a pg pool (10, like the
 * service's default) with named prepared statements, one transaction per sign-in.
 * GET /healthz answers 200; GET /bench/statements answers the number of SQL statements run so far
 * (BEGIN/COMMIT included) and of sign-in requests, so the harness can report statements per sign-in.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import Database from "better-sqlite3";
import { createLocalJWKSet, generateKeyPair, type JSONWebKeySet, jwtVerify, SignJWT } from "jose";
import pg from "pg";
import { benchServerArgs, claimRules } from "./issuer.ts";

const args = benchServerArgs();
const issuer = args.issuer;

const ACCESS_TTL = 1800;
const SESSION_TTL = 30 * 86400;
const BODY_LIMIT = 64 * 1024;
let statements = 0;
let signins = 0;

interface UserRow {
  id: string;
  username: string;
  email: string | null;
  created_at: string;
}

interface SigninInput {
  iss: string;
  sub: string;
  email: string | null;
  emailVerified: boolean;
  deviceId: string | null;
  ip: string | null;
  refreshHash: string;
  now: Date;
}

interface Store {
  /** One transaction: find-or-create the user, insert session, refresh token and audit row. */
  signin(input: SigninInput): Promise<{ user: UserRow; sessionId: string; created: boolean }>;
  close(): Promise<void>;
}

const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString("base64url")}`;
const usernameOf = (email: string | null, sub: string) => (email?.split("@")[0] ?? sub).slice(0, 64);

function openSqlite(dir: string): Store {
  mkdirSync(dir, { recursive: true });
  const db = new Database(join(dir, "floor.db"));
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  db.exec(`
    CREATE TABLE IF NOT EXISTS users (
      id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, email TEXT, email_verified INTEGER NOT NULL,
      status TEXT NOT NULL DEFAULT 'active', created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS identities (
      issuer TEXT NOT NULL, subject TEXT NOT NULL, user_id TEXT NOT NULL REFERENCES users(id),
      email TEXT, created_at TEXT NOT NULL, PRIMARY KEY (issuer, subject));
    CREATE INDEX IF NOT EXISTS identities_user ON identities(user_id);
    CREATE TABLE IF NOT EXISTS sessions (
      id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), device_id TEXT,
      created_at TEXT NOT NULL, expires_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id);
    CREATE TABLE IF NOT EXISTS refresh_tokens (
      token_hash TEXT PRIMARY KEY, session_id TEXT NOT NULL REFERENCES sessions(id),
      created_at TEXT NOT NULL, expires_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS refresh_tokens_session ON refresh_tokens(session_id);
    CREATE TABLE IF NOT EXISTS audit (
      id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, type TEXT NOT NULL, user_id TEXT,
      ip TEXT, detail TEXT);
  `);
  const findUser = db.prepare<[string, string], UserRow>(
    `SELECT u.id, u.username, u.email, u.created_at FROM identities i JOIN users u ON u.id = i.user_id
     WHERE i.issuer = ? AND i.subject = ?`,
  );
  const insertUser = db.prepare(
    `INSERT INTO users (id, username, email, email_verified, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
  );
  const insertIdentity = db.prepare(
    `INSERT INTO identities (issuer, subject, user_id, email, created_at) VALUES (?, ?, ?, ?, ?)`,
  );
  const insertSession = db.prepare(
    `INSERT INTO sessions (id, user_id, device_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
  );
  const insertRefresh = db.prepare(
    `INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES (?, ?, ?, ?)`,
  );
  const insertAudit = db.prepare(`INSERT INTO audit (at, type, user_id, ip, detail) VALUES (?, ?, ?, ?, ?)`);

  const signin = db.transaction((input: SigninInput) => {
    const now = input.now.toISOString();
    const expires = new Date(input.now.getTime() + SESSION_TTL * 1000).toISOString();
    statements += 2; // BEGIN IMMEDIATE, COMMIT
    let user = findUser.get(input.iss, input.sub);
    statements++;
    let created = false;
    if (user === undefined) {
      user = { id: newId("usr"), username: usernameOf(input.email, input.sub), email: input.email, created_at: now };
      insertUser.run(user.id, user.username, user.email, input.emailVerified ? 1 : 0, now, now);
      insertIdentity.run(input.iss, input.sub, user.id, input.email, now);
      statements += 2;
      created = true;
    }
    const sessionId = newId("ses");
    insertSession.run(sessionId, user.id, input.deviceId, now, expires);
    insertRefresh.run(input.refreshHash, sessionId, now, expires);
    insertAudit.run(
      now,
      created ? "user.created+signin.succeeded" : "signin.succeeded",
      user.id,
      input.ip,
      JSON.stringify({ provider: "bench" }),
    );
    statements += 3;
    return { user, sessionId, created };
  });
  return {
    signin: async (input) => signin.immediate(input),
    close: async () => void db.close(),
  };
}

async function openPostgres(url: string): Promise<Store> {
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  await pool.query(`
    CREATE TABLE IF NOT EXISTS users (
      id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, email TEXT, email_verified BOOLEAN NOT NULL,
      status TEXT NOT NULL DEFAULT 'active', created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE IF NOT EXISTS identities (
      issuer TEXT NOT NULL, subject TEXT NOT NULL, user_id TEXT NOT NULL REFERENCES users(id),
      email TEXT, created_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (issuer, subject));
    CREATE INDEX IF NOT EXISTS identities_user ON identities(user_id);
    CREATE TABLE IF NOT EXISTS sessions (
      id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), device_id TEXT,
      created_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ NOT NULL);
    CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id);
    CREATE TABLE IF NOT EXISTS refresh_tokens (
      token_hash TEXT PRIMARY KEY, session_id TEXT NOT NULL REFERENCES sessions(id),
      created_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ NOT NULL);
    CREATE INDEX IF NOT EXISTS refresh_tokens_session ON refresh_tokens(session_id);
    CREATE TABLE IF NOT EXISTS audit (
      id BIGSERIAL PRIMARY KEY, at TIMESTAMPTZ NOT NULL, type TEXT NOT NULL, user_id TEXT, ip TEXT, detail JSONB);
  `);
  const attempt = async (input: SigninInput) => {
    const client = await pool.connect();
    const q = <R extends pg.QueryResultRow>(name: string, text: string, values: unknown[]) => {
      statements++;
      return client.query<R>({ name, text, values });
    };
    let broken = false;
    try {
      statements++;
      await client.query("BEGIN");
      const expires = new Date(input.now.getTime() + SESSION_TTL * 1000);
      const found = await q<UserRow & { created_at: Date }>(
        "floor_find_user",
        `SELECT u.id, u.username, u.email, u.created_at FROM identities i JOIN users u ON u.id = i.user_id
         WHERE i.issuer = $1 AND i.subject = $2`,
        [input.iss, input.sub],
      );
      let user: UserRow;
      let created = false;
      const row = found.rows[0];
      if (row === undefined) {
        user = {
          id: newId("usr"),
          username: usernameOf(input.email, input.sub),
          email: input.email,
          created_at: input.now.toISOString(),
        };
        await q(
          "floor_insert_user",
          `INSERT INTO users (id, username, email, email_verified, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)`,
          [user.id, user.username, user.email, input.emailVerified, input.now],
        );
        await q(
          "floor_insert_identity",
          `INSERT INTO identities (issuer, subject, user_id, email, created_at) VALUES ($1, $2, $3, $4, $5)`,
          [input.iss, input.sub, user.id, input.email, input.now],
        );
        created = true;
      } else {
        user = { ...row, created_at: row.created_at.toISOString() };
      }
      const sessionId = newId("ses");
      await q(
        "floor_insert_session",
        `INSERT INTO sessions (id, user_id, device_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
        [sessionId, user.id, input.deviceId, input.now, expires],
      );
      await q(
        "floor_insert_refresh",
        `INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
        [input.refreshHash, sessionId, input.now, expires],
      );
      await q("floor_insert_audit", `INSERT INTO audit (at, type, user_id, ip, detail) VALUES ($1, $2, $3, $4, $5)`, [
        input.now,
        created ? "user.created+signin.succeeded" : "signin.succeeded",
        user.id,
        input.ip,
        JSON.stringify({ provider: "bench" }),
      ]);
      statements++;
      await client.query("COMMIT");
      return { user, sessionId, created };
    } catch (e) {
      try {
        await client.query("ROLLBACK");
      } catch {
        broken = true;
      }
      throw e;
    } finally {
      client.release(broken);
    }
  };
  return {
    async signin(input) {
      try {
        return await attempt(input);
      } catch (e) {
        // Two first sign-ins of the same subject at once: the loser retries and finds the user.
        if ((e as { code?: string }).code === "23505") return attempt(input);
        throw e;
      }
    },
    close: () => pool.end(),
  };
}

// --- start ---------------------------------------------------------------------------------

const discovery = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as { jwks_uri: string };
const jwks = createLocalJWKSet((await (await fetch(discovery.jwks_uri)).json()) as JSONWebKeySet);
const rules = claimRules(issuer);
const { privateKey: signingKey } = await generateKeyPair("ES256");
const signingKid = randomUUID();

let store: Store;
if (args.db === "postgresql") {
  const url = process.env["BENCH_DATABASE_URL"];
  if (url === undefined || url === "") throw new Error("--db postgresql needs BENCH_DATABASE_URL");
  store = await openPostgres(url);
} else {
  const dir = args.dataDir;
  if (dir === undefined) throw new Error("--db sqlite needs --data-dir DIR");
  store = openSqlite(dir);
}

let selfUrl = "";

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > BODY_LIMIT) {
        resolve(null);
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

async function signin(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const text = await readBody(req);
  if (text === null) return send(res, 413, { code: "request_too_large" });
  let body: { id_token?: unknown; provider?: unknown; device_id?: unknown };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    return send(res, 400, { code: "invalid_argument", message: "body is not JSON" });
  }
  if (typeof body !== "object" || body === null || typeof body.id_token !== "string" || body.id_token === "") {
    return send(res, 400, { code: "invalid_argument", message: "id_token is required" });
  }
  if (body.provider !== undefined && body.provider !== "bench") return send(res, 400, { code: "unknown_provider" });
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(body.id_token, jwks, rules));
  } catch {
    return send(res, 401, { code: "invalid_id_token" });
  }
  const now = new Date();
  const refreshToken = `rt_${randomBytes(32).toString("base64url")}`;
  const { user, sessionId } = await store.signin({
    iss: claims.iss!,
    sub: claims.sub!,
    email: typeof claims["email"] === "string" ? claims["email"] : null,
    emailVerified: claims["email_verified"] === true,
    deviceId:
      typeof body.device_id === "string" ? createHash("sha256").update(body.device_id).digest("base64url") : null,
    ip: req.socket.remoteAddress ?? null,
    refreshHash: createHash("sha256").update(refreshToken).digest("base64url"),
    now,
  });
  const iat = Math.floor(now.getTime() / 1000);
  const accessToken = await new SignJWT({ sid: sessionId, amr: ["ext"], idp: "bench" })
    .setProtectedHeader({ alg: "ES256", kid: signingKid, typ: "at+jwt" })
    .setIssuer(selfUrl)
    .setSubject(user.id)
    .setAudience("identity")
    .setIssuedAt(iat)
    .setExpirationTime(iat + ACCESS_TTL)
    .setJti(randomUUID())
    .sign(signingKey);
  send(res, 200, {
    access_token: accessToken,
    token_type: "Bearer",
    expires_in: ACCESS_TTL,
    refresh_token: refreshToken,
    user_id: user.id,
    user: {
      id: user.id,
      username: user.username,
      email: user.email ?? undefined,
      status: "active",
      created_at: user.created_at,
      must_change_password: false,
    },
    requires_mfa: false,
    must_change_password: false,
    risk_level: "low",
  });
}

const server = createServer((req, res) => {
  const path = (req.url ?? "/").split("?")[0];
  if (req.method === "POST" && path === "/auth/id-token/signin") {
    signins++;
    signin(req, res).catch((e: unknown) => {
      process.stderr.write(`floor: sign-in failed: ${String(e)}\n`);
      if (!res.headersSent) send(res, 500, { code: "internal" });
    });
    return;
  }
  if (req.method === "GET" && path === "/healthz") return send(res, 200, { status: "ok" });
  if (req.method === "GET" && path === "/bench/statements") return send(res, 200, { statements, signins });
  send(res, 404, { code: "not_found" });
});
server.keepAliveTimeout = 65_000;
const port = Number(process.env["PORT"] ?? 0);
const host = process.env["HOST"] ?? "127.0.0.1";
await new Promise<void>((resolve) => server.listen(port, host, resolve));
selfUrl = `http://${host}:${(server.address() as AddressInfo).port}`;
process.stdout.write(`${JSON.stringify({ msg: "listening", url: selfUrl, database: args.db })}\n`);

const stop = () => {
  server.close(() => {
    void store.close().then(() => process.exit(0));
  });
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 3000).unref();
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
