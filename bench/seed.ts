/**
 * Fills a SQLite database with history for the "flat with size" run of `npm run bench`:
 *
 *   node bench/seed.ts FILE USERS AUDIT_ROWS
 *
 * migrates FILE, then inserts USERS users with one identity each (issuer https://seed.invalid)
 * and AUDIT_ROWS audit events over the last 90 days: mostly sign-ins of random users from random
 * addresses (198.18.0.0/15, the benchmarking range), 5% failures, as a busy deployment accumulates them. Bounded: one pass, batches of
 * 10,000 rows per transaction.
 */
import Sqlite from "better-sqlite3";
import { migrate } from "../src/store/migrate.ts";

const [file, usersArg, auditArg] = process.argv.slice(2);
if (file === undefined) throw new Error("usage: node bench/seed.ts FILE USERS AUDIT_ROWS");
const users = Number(usersArg ?? 1_000_000);
const audits = Number(auditArg ?? 5_000_000);

await migrate(`file:${file}`);
const db = new Sqlite(file);
db.pragma("journal_mode = WAL");
db.pragma("synchronous = OFF");
const iso = (ms: number) => new Date(ms).toISOString().replace("Z", "+00:00");
const now = Date.now();
const insertUser =
  db.prepare(`INSERT INTO users (id, username, email, email_normalized, email_verified, phone, status, must_change_password,
  created_at, updated_at, last_signin_at) VALUES (?, ?, ?, ?, 1, NULL, 'active', 0, ?, ?, ?)`);
const insertIdentity =
  db.prepare(`INSERT INTO identities (id, user_id, issuer, subject, provider, email, email_verified, created_at, last_signin_at)
  VALUES (?, ?, 'https://seed.invalid', ?, 'seed', ?, 1, ?, ?)`);
const insertAudit =
  db.prepare(`INSERT INTO audit_events (id, at, type, code, user_id, provider, issuer, subject, ip, user_agent, request_id, detail)
  VALUES (?, ?, ?, ?, ?, 'seed', 'https://seed.invalid', ?, ?, 'seed', NULL, NULL)`);
const started = performance.now();
const batch = 10_000;
for (let from = 0; from < users; from += batch) {
  db.transaction(() => {
    for (let i = from; i < Math.min(users, from + batch); i++) {
      const at = iso(now - (i % 90) * 86_400_000);
      insertUser.run(`usr_seed_${i}`, `seed${i}`, `seed${i}@seed.invalid`, `seed${i}@seed.invalid`, at, at, at);
      insertIdentity.run(`idn_seed_${i}`, `usr_seed_${i}`, `seed-${i}`, `seed${i}@seed.invalid`, at, at);
    }
  })();
}
let rnd = 12345;
const next = () => (rnd = (rnd * 1103515245 + 12345) % 2147483648);
for (let from = 0; from < audits; from += batch) {
  db.transaction(() => {
    for (let i = from; i < Math.min(audits, from + batch); i++) {
      const user = next() % Math.max(1, users);
      const failed = next() % 20 === 0;
      insertAudit.run(
        `evt_seed_${i}`,
        iso(now - (next() % (90 * 86_400)) * 1000),
        failed ? "signin.failed" : "signin.succeeded",
        failed ? "id_token_expired" : null,
        `usr_seed_${user}`,
        `seed-${user}`,
        `198.${18 + (next() % 2)}.${next() % 256}.${next() % 256}`,
      );
    }
  })();
}
db.pragma("wal_checkpoint(TRUNCATE)");
db.close();
process.stdout.write(
  `seeded ${users} users and ${audits} audit rows in ${((performance.now() - started) / 1000).toFixed(1)} s\n`,
);
