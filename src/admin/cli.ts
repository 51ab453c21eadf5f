/**
 * The operators' command line: parses arguments, calls the core's AdminService, prints the result
 * as a table (people) or JSON (`--json`, scripts). It decides nothing itself. main.ts runs it as
 * `node src/main.ts admin …` (`npm run admin -- …`) and hands it what it needs from the process.
 */
import type { AdminService } from "../core/admin.ts";
import { type ErrorCode, isDomainError } from "../core/errors.ts";
import { ADMIN_KEY_NAME } from "../config/schema.ts";
import { mintAdminKey } from "../tokens/admin-keys.ts";
import { durationMs, limitOf, lockEndOf, parse, statusOf, UsageError, type Values } from "./cli-args.ts";
import {
  auditTable,
  type CliOutput,
  detailJson,
  detailText,
  eventJson,
  identityJson,
  label,
  statusOut,
  userJson,
  usersTable,
} from "./cli-output.ts";

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

async function execute(admin: AdminService, command: string, args: string[], v: Values, now: Date): Promise<CliOutput> {
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
      const until =
        v.until !== undefined
          ? lockEndOf(v.until)
          : v.for !== undefined
            ? new Date(now.getTime() + durationMs(v.for))
            : null;
      return statusOut(
        await admin.lock(user, { until, reason: v.reason, revokeSessions: v["revoke-sessions"] === true }),
        "locked",
      );
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
        json: {
          user: userJson(r.user),
          identity: identityJson(r.identity),
          remaining_identities: r.remainingIdentities,
          revoked_sessions: r.revokedSessions,
        },
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

function newKey(name: string | undefined): CliOutput {
  if (name === undefined)
    throw new UsageError("keys new needs --name NAME (recorded as the actor of the key's actions)");
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
    io.stderr(
      `${JSON.stringify({ error: { code, message, ...(detail === undefined ? {} : { details: detail }) } })}\n`,
    );
  } else {
    io.stderr(
      `error: ${message}${code === "usage" || code === "configuration" || code === "database" || code === "internal" ? "" : ` [${code}]`}\n`,
    );
    if (detail?.["candidates"] !== undefined) io.stderr(`candidates: ${detail["candidates"].split(",").join(" ")}\n`);
  }
  return status;
}
