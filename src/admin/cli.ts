/**
 * The operators' command line: parses arguments, calls the core's AdminService, prints the result
 * as a table (people) or JSON (`--json`, scripts). It decides nothing itself. main.ts runs it as
 * `node src/main.ts admin …` (`npm run admin -- …`) and hands it what it needs from the process.
 */
import { parseArgs } from "node:util";
import type { AdminService, AdminUserDetail, AdminUserView, StatusChangeResult } from "../core/admin.ts";
import { type ErrorCode, isDomainError } from "../core/errors.ts";
import { USER_STATUSES, type UserStatus } from "../core/model.ts";
import { parseLockEnd, parseUserStatus } from "../core/user-status.ts";
import type { AuditEntry } from "../core/ports/admin.ts";
import { ADMIN_KEY_NAME } from "../config/schema.ts";
import { mintAdminKey } from "../tokens/admin-keys.ts";

export const USAGE = `Usage: npm run admin -- <command> [options]      (node src/main.ts admin <command> …)

Users are named by id (usr_…), username or e-mail address.

  users list [--status active|disabled|locked|pending] [--limit N]   newest first (default 50)
  users show <user>                       identities, sessions, password status, MFA factors
  users disable <user> [--reason TEXT]    refuse sign-in and refresh; ends every session
  users enable <user>                     back to active (from disabled, locked or pending)
  users lock <user> [--until ISO8601 | --for 30m|12h|7d] [--reason TEXT] [--revoke-sessions]
                                          refuse sign-in and refresh until then (default: until unlocked)
  users unlock <user>
  users force-password-change <user> [--clear]
                                          the user must change their local password (--clear: undo)
  users unlink <user> <identity-id|provider> [--force]
                                          remove an external identity and end its provider's sessions;
                                          --force to remove the user's last one
  audit <user> [--limit N]                the user's recent audit events (default 20)
  keys new --name NAME                    a new admin API key (AdminService), printed once, with
                                          the line for admin.api_keys (only its hash); needs no database

Options for every command:
  --json           machine-readable output (errors too, on stderr)
  --config FILE    configuration file (default: CONFIG_FILE, else ./config.yaml); DATABASE_URL wins

Exit status: 0 done · 1 failed (internal error, database unavailable) · 2 usage or configuration
error · 3 user or identity not found · 4 refused (ambiguous name, last identity, wrong status, …)
`;

export interface AdminCliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Opens the admin service over the configured database (`configFile` from --config). */
  open(configFile: string | undefined): Promise<{ admin: AdminService; close(): Promise<void> }>;
  /** For --for durations. */
  now(): Date;
}

class UsageError extends Error {
  override readonly name = "UsageError";
}

const OPTIONS = {
  json: { type: "boolean" },
  config: { type: "string" },
  help: { type: "boolean", short: "h" },
  status: { type: "string" },
  limit: { type: "string" },
  until: { type: "string" },
  for: { type: "string" },
  reason: { type: "string" },
  force: { type: "boolean" },
  clear: { type: "boolean" },
  "revoke-sessions": { type: "boolean" },
  name: { type: "string" },
} as const;

type OptionName = keyof typeof OPTIONS;
const COMMON: OptionName[] = ["json", "config", "help"];

/** Which options each command takes, and how many positional arguments. */
const COMMANDS: Record<string, { args: string[]; options: OptionName[] }> = {
  "users list": { args: [], options: ["status", "limit"] },
  "users show": { args: ["user"], options: [] },
  "users disable": { args: ["user"], options: ["reason"] },
  "users enable": { args: ["user"], options: [] },
  "users lock": { args: ["user"], options: ["until", "for", "reason", "revoke-sessions"] },
  "users unlock": { args: ["user"], options: [] },
  "users force-password-change": { args: ["user"], options: ["clear"] },
  "users unlink": { args: ["user", "identity"], options: ["force"] },
  audit: { args: ["user"], options: ["limit"] },
  "keys new": { args: [], options: ["name"] },
};

/** Runs one admin command; returns the process exit status. */
export async function runAdminCli(argv: string[], io: AdminCliIo): Promise<number> {
  let json = argv.includes("--json");
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
    json = parsed.values.json === true;
  } catch (e) {
    return fail(io, json, e);
  }
  if (parsed.help) {
    io.stdout(USAGE);
    return 0;
  }
  if (parsed.command === null) {
    io.stderr(USAGE);
    return 2;
  }
  if (parsed.command === "keys new") {
    // Offline: a key is minted here and shown once; the configuration gets only its hash.
    try {
      const out = newKey(parsed.values.name);
      io.stdout(json ? `${JSON.stringify(out.json, null, 2)}\n` : out.text);
      return 0;
    } catch (e) {
      return fail(io, json, e);
    }
  }
  let tool: Awaited<ReturnType<AdminCliIo["open"]>> | undefined;
  try {
    tool = await io.open(parsed.values.config);
    const out = await execute(tool.admin, parsed.command, parsed.args, parsed.values, io.now());
    io.stdout(json ? `${JSON.stringify(out.json, null, 2)}\n` : out.text);
    return 0;
  } catch (e) {
    return fail(io, json, e);
  } finally {
    await tool?.close().catch(() => undefined);
  }
}

function parse(argv: string[]) {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const help = values.help === true;
  if (positionals.length === 0) return { command: null, args: [], values, help };
  const two = `${positionals[0]} ${positionals[1] ?? ""}`;
  const command = two in COMMANDS ? two : positionals[0]! in COMMANDS ? positionals[0]! : null;
  if (command === null) {
    if (help) return { command: null, args: [], values, help };
    throw new UsageError(`unknown command "${positionals.slice(0, 2).join(" ")}"; see --help`);
  }
  const spec = COMMANDS[command]!;
  const args = positionals.slice(command.split(" ").length);
  if (!help && args.length !== spec.args.length) {
    throw new UsageError(`${command} takes ${spec.args.map((a) => `<${a}>`).join(" ") || "no arguments"}; see --help`);
  }
  for (const name of Object.keys(values) as OptionName[]) {
    if (!COMMON.includes(name) && !spec.options.includes(name)) throw new UsageError(`${command} does not take --${name}`);
  }
  return { command, args, values, help };
}

type Values = ReturnType<typeof parse>["values"];

async function execute(admin: AdminService, command: string, args: string[], v: Values, now: Date): Promise<{ text: string; json: unknown }> {
  const [user = "", second = ""] = args;
  switch (command) {
    case "users list": {
      const status = v.status === undefined ? undefined : statusOf(v.status);
      const users = await admin.listUsers({ status, limit: limitOf(v.limit, 50) });
      return { json: { users: users.map(userJson) }, text: usersTable(users) };
    }
    case "users show": {
      const detail = await admin.showUser(user);
      return { json: detailJson(detail), text: detailText(detail) };
    }
    case "users disable":
      return statusOut(await admin.disable(user, { reason: v.reason }), "disabled");
    case "users enable":
      return statusOut(await admin.enable(user), "enabled");
    case "users lock": {
      if (v.until !== undefined && v.for !== undefined) throw new UsageError("give --until or --for, not both");
      const until = v.until !== undefined ? lockEndOf(v.until) : v.for !== undefined ? new Date(now.getTime() + durationMs(v.for)) : null;
      return statusOut(await admin.lock(user, { until, reason: v.reason, revokeSessions: v["revoke-sessions"] === true }), "locked");
    }
    case "users unlock":
      return statusOut(await admin.unlock(user), "unlocked");
    case "users force-password-change": {
      const view = await admin.forcePasswordChange(user, { clear: v.clear === true });
      const what = v.clear === true ? "no longer has to change" : "must change";
      return { json: { user: userJson(view) }, text: `${label(view)} ${what} their password at next use\n` };
    }
    case "users unlink": {
      const r = await admin.unlink(user, second, { force: v.force === true });
      return {
        json: { user: userJson(r.user), identity: identityJson(r.identity), remaining_identities: r.remainingIdentities, revoked_sessions: r.revokedSessions },
        text: `unlinked ${r.identity.id} (${r.identity.provider}) from ${label(r.user)}; ${r.remainingIdentities} identities left, ${r.revokedSessions} sessions of ${r.identity.provider} ended\n`,
      };
    }
    case "audit": {
      const { user: view, events } = await admin.audit(user, limitOf(v.limit, 20));
      return { json: { user_id: view.user.id, events: events.map(eventJson) }, text: auditTable(events) };
    }
  }
  throw new UsageError(`unknown command ${command}`);
}

function newKey(name: string | undefined): { text: string; json: unknown } {
  if (name === undefined) throw new UsageError("keys new needs --name NAME (recorded as the actor of the key's actions)");
  if (!ADMIN_KEY_NAME.test(name)) throw new UsageError("--name: letters, digits and . _ @ -, at most 64 characters");
  const { key, sha256Hex } = mintAdminKey();
  // Quoted: a name like 2026 or true must stay a string in YAML.
  const entry = `- { name: ${JSON.stringify(name)}, sha256: ${sha256Hex} }`;
  return {
    json: { name, key, sha256: sha256Hex, config_entry: { name, sha256: sha256Hex } },
    text:
      `New admin key "${name}". It is shown this once and stored nowhere; put it in your secret store:\n\n` +
      `  ${key}\n\n` +
      "Add its hash to the configuration of every replica and restart them:\n\n" +
      `admin:\n  api_keys:\n    ${entry}\n\n` +
      "Callers send it as Authorization: Bearer adm_… (or x-admin-key: adm_…).\n",
  };
}

// ---- argument values ---------------------------------------------------------------------------

function statusOf(s: string): UserStatus {
  const status = parseUserStatus(s);
  if (status === null) throw new UsageError(`--status must be one of ${USER_STATUSES.join(", ")}`);
  return status;
}

function limitOf(s: string | undefined, fallback: number): number {
  if (s === undefined) return fallback;
  if (!/^\d{1,4}$/.test(s) || Number(s) < 1 || Number(s) > 1000) throw new UsageError("--limit must be a number from 1 to 1000");
  return Number(s);
}

function lockEndOf(s: string): Date {
  const until = parseLockEnd(s);
  if (until === null) throw new UsageError(`--until wants a time with its offset, like 2026-12-01T08:00:00Z (got "${s}")`);
  return until;
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `30m`, `12h`, `7d`, `1h30m`. */
function durationMs(s: string): number {
  if (!/^(\d+[smhdw])+$/.test(s)) throw new UsageError(`--for wants a duration like 30m, 12h, 7d or 1h30m (got "${s}")`);
  let ms = 0;
  for (const [, n, unit] of s.matchAll(/(\d+)([smhdw])/g)) ms += Number(n) * UNIT_MS[unit!]!;
  if (ms <= 0 || ms > 3650 * UNIT_MS["d"]!) throw new UsageError("--for must be between 1s and 10 years");
  return ms;
}

// ---- errors ------------------------------------------------------------------------------------

const NOT_FOUND: readonly ErrorCode[] = ["user_not_found", "identity_not_found"];
const REFUSED: readonly ErrorCode[] = ["user_ambiguous", "last_identity", "user_status_conflict", "password_not_set"];

function fail(io: AdminCliIo, json: boolean, e: unknown): number {
  let code: string;
  let message: string;
  let status: number;
  let detail: Readonly<Record<string, string>> | undefined;
  const nodeCode = String((e as { code?: unknown } | null)?.code ?? "");
  if (e instanceof UsageError || nodeCode.startsWith("ERR_PARSE_ARGS")) {
    [code, message, status] = ["usage", (e as Error).message, 2];
  } else if (e instanceof Error && e.name === "ConfigError") {
    [code, message, status] = ["configuration", e.message, 2];
  } else if (e instanceof Error && e.name === "DatabaseError") {
    // The database cannot be reached: its message names the setting and the database.
    [code, message, status] = ["database", e.message, 1];
  } else if (isDomainError(e)) {
    code = e.code;
    message = e.message;
    detail = e.detail;
    status = NOT_FOUND.includes(e.code) ? 3 : REFUSED.includes(e.code) ? 4 : e.code === "invalid_request" ? 2 : 1;
  } else {
    // Unknown faults: the message is for the operator at the console, who may see causes.
    code = "internal";
    message = e instanceof Error ? e.message : String(e);
    status = 1;
  }
  if (json) {
    io.stderr(`${JSON.stringify({ error: { code, message, ...(detail === undefined ? {} : { details: detail }) } })}\n`);
  } else {
    io.stderr(`error: ${message}${code === "usage" || code === "configuration" || code === "database" || code === "internal" ? "" : ` [${code}]`}\n`);
    if (detail?.["candidates"] !== undefined) io.stderr(`candidates: ${detail["candidates"].split(",").join(" ")}\n`);
  }
  return status;
}

// ---- JSON --------------------------------------------------------------------------------------

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());

function userJson(v: AdminUserView) {
  const u = v.user;
  return {
    id: u.id,
    username: u.username,
    email: u.email,
    email_verified: u.emailVerified,
    phone: u.phone,
    status: u.status,
    effective_status: v.effectiveStatus,
    locked_until: iso(u.lockedUntil),
    status_reason: u.statusReason,
    must_change_password: v.passwordStatus.mustChangePassword,
    password: u.passwordChangedAt === null ? null : {
      changed_at: iso(u.passwordChangedAt),
      expires_in_days: v.passwordStatus.passwordExpiresIn ?? null,
      warning: v.passwordStatus.passwordWarning ?? null,
      forced_change: u.mustChangePassword,
    },
    created_at: iso(u.createdAt),
    last_signin_at: iso(u.lastSigninAt),
  };
}

function identityJson(i: AdminUserDetail["identities"][number]) {
  return {
    id: i.id, provider: i.provider, issuer: i.issuer, subject: i.subject, email: i.email, email_verified: i.emailVerified,
    created_at: iso(i.createdAt), last_signin_at: iso(i.lastSigninAt),
  };
}

function detailJson(d: AdminUserDetail) {
  return {
    ...userJson(d),
    identities: d.identities.map(identityJson),
    active_sessions: d.activeSessions,
    mfa: {
      factors: d.factors.map((f) => ({ id: f.id, type: f.type, confirmed_at: iso(f.confirmedAt), created_at: iso(f.createdAt) })),
      unused_recovery_codes: d.unusedRecoveryCodes,
    },
  };
}

function eventJson(e: AuditEntry) {
  return {
    id: e.id, at: iso(e.at), type: e.type, code: e.code, provider: e.provider, issuer: e.issuer, subject: e.subject,
    ip: e.ip, user_agent: e.userAgent, request_id: e.requestId, detail: e.detail,
  };
}

function statusOut(r: StatusChangeResult, verb: string): { text: string; json: unknown } {
  const json = { user: userJson(r.user), previous_status: r.previousStatus, changed: r.changed, revoked_sessions: r.revokedSessions };
  if (!r.changed) return { json, text: `${label(r.user)} is already ${r.user.user.status}; nothing changed\n` };
  const until = r.user.user.status === "locked" ? (r.user.user.lockedUntil === null ? " until unlocked" : ` until ${iso(r.user.user.lockedUntil)}`) : "";
  const sessions = r.revokedSessions > 0 ? `; ${r.revokedSessions} session${r.revokedSessions === 1 ? "" : "s"} ended` : "";
  return { json, text: `${verb} ${label(r.user)}${until} (was ${r.previousStatus})${sessions}\n` };
}

// ---- text --------------------------------------------------------------------------------------

const label = (v: AdminUserView) => `${v.user.username} (${v.user.id})`;

function statusText(v: AdminUserView): string {
  const u = v.user;
  if (u.status !== "locked") return u.status;
  if (u.lockedUntil === null) return "locked";
  return v.effectiveStatus === "active" ? `active (lock ended ${iso(u.lockedUntil)})` : `locked until ${iso(u.lockedUntil)}`;
}

function passwordText(v: AdminUserView): string {
  const p = v.passwordStatus;
  const parts: string[] = [];
  if (v.user.passwordChangedAt === null) parts.push("none");
  else if (p.passwordWarning !== undefined) parts.push(`${p.passwordWarning} (${p.passwordExpiresIn}d)`);
  else parts.push(p.passwordExpiresIn === undefined ? "set" : `set (${p.passwordExpiresIn}d left)`);
  if (p.mustChangePassword) parts.push("must change");
  return parts.join(", ");
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return `${[line(head), ...rows.map(line)].join("\n")}\n`;
}

/** Control characters from stored data never reach the operator's terminal. */
const clean = (s: string | null | undefined): string => (s === null || s === undefined || s === "" ? "-" : s.replace(/[\p{Cc}]/gu, "?"));
const time = (d: Date | null): string => (d === null ? "-" : iso(d)!.replace(/\.\d{3}Z$/, "Z"));

function usersTable(users: AdminUserView[]): string {
  if (users.length === 0) return "no users\n";
  return table(
    ["ID", "USERNAME", "EMAIL", "STATUS", "PASSWORD", "CREATED", "LAST SIGN-IN"],
    users.map((v) => [v.user.id, clean(v.user.username), clean(v.user.email), statusText(v), passwordText(v), time(v.user.createdAt), time(v.user.lastSigninAt)]),
  );
}

function detailText(d: AdminUserDetail): string {
  const u = d.user;
  const kv = (k: string, value: string) => `${`${k}:`.padEnd(18)}${value}\n`;
  let out = "";
  out += kv("id", u.id);
  out += kv("username", clean(u.username));
  out += kv("email", `${clean(u.email)}${u.email === null ? "" : u.emailVerified ? " (verified)" : " (unverified)"}`);
  out += kv("phone", clean(u.phone));
  out += kv("status", statusText(d));
  if (u.statusReason !== null) out += kv("status reason", clean(u.statusReason));
  out += kv("password", passwordText(d));
  if (u.passwordChangedAt !== null) out += kv("password changed", time(u.passwordChangedAt));
  out += kv("created", time(u.createdAt));
  out += kv("last sign-in", time(u.lastSigninAt));
  out += kv("active sessions", String(d.activeSessions));
  out += kv("mfa factors", d.factors.length === 0 ? "none" : d.factors.map((f) => `${f.type}${f.confirmedAt === null ? " (unconfirmed)" : ""}`).join(", "));
  out += kv("recovery codes", `${d.unusedRecoveryCodes} unused`);
  out += `\nidentities (${d.identities.length}):\n`;
  if (d.identities.length > 0) {
    out += table(
      ["  ID", "PROVIDER", "SUBJECT", "EMAIL", "LAST SIGN-IN", "ISSUER"],
      d.identities.map((i) => [`  ${i.id}`, clean(i.provider), clean(i.subject), clean(i.email), time(i.lastSigninAt), clean(i.issuer)]),
    );
  }
  return out;
}

function auditTable(events: AuditEntry[]): string {
  if (events.length === 0) return "no audit events\n";
  return table(
    ["AT", "TYPE", "CODE", "PROVIDER", "IP", "DETAIL"],
    events.map((e) => [time(e.at), e.type, clean(e.code), clean(e.provider), clean(e.ip), e.detail === null ? "-" : clean(JSON.stringify(e.detail))]),
  );
}
