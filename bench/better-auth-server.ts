/**
 * better-auth, as a comparison point: its ID-token sign-in (`POST /api/auth/sign-in/social`
 * with `{provider, idToken: {token}}`) against the bench issuer.
 *
 *   PORT=... HOST=127.0.0.1 node bench/better-auth-server.ts --issuer URL [--db sqlite --data-dir DIR | --db postgresql]
 *
 * How better-auth is made to accept an ID token from the bench issuer: its `google` social
 * provider is configured with `clientId: "bench-client"` and a `verifyIdToken` override. The
 * id-token branch of /sign-in/social calls `verifyProviderIdToken`, which hands the token to
 * `options.verifyIdToken` when one is given (instead of Google's JWKS and issuer); ours runs jose
 * `jwtVerify` against the bench issuer's JWKS (fetched once, then a local key set) with the same
 * claim rules as the floor and the service (issuer, audience, RS256, 60 s tolerance, required
 * sub/exp/iat). `getUserInfo` maps the (just verified) claims to better-auth's user: email,
 * email_verified, and the account id from `sub`. Everything after that (find account, create
 * user + account or update the account, create session, cookie) is better-auth's own code path.
 *
 * Schema: created at start with better-auth's migration API (getMigrations → runMigrations), the
 * same plan its CLI's `migrate` runs. SQLite is better-sqlite3 in WAL mode with
 * synchronous=NORMAL; PostgreSQL (BENCH_DATABASE_URL) is a pg pool of 10. Its rate limiter and
 * telemetry are off. GET /healthz answers 200; GET /bench/statements answers the number of SQL
 * statements run so far and of sign-in requests. BENCH_TRACE=1 logs every statement to stderr.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import Database from "better-sqlite3";
import { betterAuth, type BetterAuthOptions } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import type { GoogleProfile } from "better-auth/social-providers";
import { toNodeHandler } from "better-auth/node";
import { createLocalJWKSet, decodeJwt, type JSONWebKeySet, jwtVerify } from "jose";
import pg from "pg";
import { BENCH_CLIENT_ID, benchServerArgs, claimRules } from "./issuer.ts";

const args = benchServerArgs();
const issuer = args.issuer;

let statements = 0;
let signins = 0;
const trace = process.env["BENCH_TRACE"] === "1"; // log every statement to stderr
let database: Database.Database | pg.Pool;
if (args.db === "postgresql") {
  const url = process.env["BENCH_DATABASE_URL"];
  if (url === undefined || url === "") throw new Error("--db postgresql needs BENCH_DATABASE_URL");
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  // Count statements: every query Kysely's PostgresDialect sends goes through client.query.
  pool.on("connect", (client) => {
    const query = client.query.bind(client) as (...a: unknown[]) => unknown;
    (client as unknown as { query: (...a: unknown[]) => unknown }).query = (...a: unknown[]) => {
      statements++;
      if (trace) process.stderr.write(`sql: ${String((a[0] as { text?: string })?.text ?? a[0]).slice(0, 160)}\n`);
      return query(...a);
    };
  });
  database = pool;
} else {
  const dir = args.dataDir;
  if (dir === undefined) throw new Error("--db sqlite needs --data-dir DIR");
  mkdirSync(dir, { recursive: true });
  const db = new Database(join(dir, "better-auth.db"));
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  // Count statements: Kysely's SqliteDialect prepares every query it runs (BEGIN/COMMIT too).
  const prepare = db.prepare.bind(db);
  db.prepare = ((source: string) => {
    statements++;
    if (trace) process.stderr.write(`sql: ${source.slice(0, 160)}\n`);
    return prepare(source);
  }) as typeof db.prepare;
  database = db;
}

const discovery = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as { jwks_uri: string };
const jwks = createLocalJWKSet((await (await fetch(discovery.jwks_uri)).json()) as JSONWebKeySet);
const rules = claimRules(issuer);

const port = Number(process.env["PORT"] ?? 0);
const host = process.env["HOST"] ?? "127.0.0.1";
if (port === 0) throw new Error("better-auth needs its baseURL up front: set PORT to a free port");
const baseURL = `http://${host}:${port}`;

const options = {
  appName: "bench",
  baseURL,
  basePath: "/api/auth",
  secret: process.env["BETTER_AUTH_SECRET"] ?? randomBytes(32).toString("base64url"),
  database,
  rateLimit: { enabled: false },
  telemetry: { enabled: false },
  logger: { level: "error" },
  socialProviders: {
    google: {
      clientId: BENCH_CLIENT_ID,
      clientSecret: "unused-in-id-token-sign-in",
      async verifyIdToken(token: string) {
        try {
          await jwtVerify(token, jwks, rules);
          return true;
        } catch {
          return false;
        }
      },
      async getUserInfo(tokens) {
        if (tokens.idToken === undefined) return null;
        // Verified by verifyIdToken just before; better-auth takes the account id from `sub`
        // (the google provider's accountSubject).
        const claims = decodeJwt<GoogleProfile>(tokens.idToken);
        return {
          user: {
            email: typeof claims["email"] === "string" ? claims["email"] : undefined,
            emailVerified: claims["email_verified"] === true,
            name: "",
          },
          data: claims,
        };
      },
    },
  },
} satisfies BetterAuthOptions;

const { runMigrations } = await getMigrations(options);
await runMigrations();
statements = 0;

const auth = betterAuth(options);
const handler = toNodeHandler(auth);
const server = createServer((req, res) => {
  const path = (req.url ?? "/").split("?")[0];
  if (req.method === "GET" && path === "/healthz") {
    res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}');
    return;
  }
  if (req.method === "GET" && path === "/bench/statements") {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ statements, signins }));
    return;
  }
  if (req.method === "POST" && path === "/api/auth/sign-in/social") signins++;
  void handler(req, res);
});
server.keepAliveTimeout = 65_000;
await new Promise<void>((resolve) => server.listen(port, host, resolve));
process.stdout.write(
  `${JSON.stringify({ msg: "listening", url: `http://${host}:${(server.address() as AddressInfo).port}`, database: args.db })}\n`,
);

const stop = () => {
  server.close(() => {
    const closing = database instanceof pg.Pool ? database.end() : Promise.resolve(database.close());
    void closing.then(() => process.exit(0));
  });
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 3000).unref();
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
