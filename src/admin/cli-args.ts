import { parseArgs } from "node:util";
import { USER_STATUSES, type UserStatus } from "../core/model.ts";
import { parseLockEnd, parseUserStatus } from "../core/user-status.ts";

/** The admin CLI's arguments: which commands there are, the options each takes, their values checked. */

/** A mistake in the command line (exit status 2). */
export class UsageError extends Error {
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

/** The command named, its positional arguments and options, each checked against the command's spec. */
export function parse(argv: string[]) {
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
    if (!COMMON.includes(name) && !spec.options.includes(name))
      throw new UsageError(`${command} does not take --${name}`);
  }
  return { command, args, values, help };
}

export type Values = ReturnType<typeof parse>["values"];

export function statusOf(s: string): UserStatus {
  const status = parseUserStatus(s);
  if (status === null) throw new UsageError(`--status must be one of ${USER_STATUSES.join(", ")}`);
  return status;
}

export function limitOf(s: string | undefined, fallback: number): number {
  if (s === undefined) return fallback;
  if (!/^\d{1,4}$/.test(s) || Number(s) < 1 || Number(s) > 1000)
    throw new UsageError("--limit must be a number from 1 to 1000");
  return Number(s);
}

export function lockEndOf(s: string): Date {
  const until = parseLockEnd(s);
  if (until === null)
    throw new UsageError(`--until wants a time with its offset, like 2026-12-01T08:00:00Z (got "${s}")`);
  return until;
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `30m`, `12h`, `7d`, `1h30m`. */
export function durationMs(s: string): number {
  if (!/^(\d+[smhdw])+$/.test(s))
    throw new UsageError(`--for wants a duration like 30m, 12h, 7d or 1h30m (got "${s}")`);
  let ms = 0;
  for (const [, n, unit] of s.matchAll(/(\d+)([smhdw])/g)) ms += Number(n) * UNIT_MS[unit!]!;
  if (ms <= 0 || ms > 3650 * UNIT_MS["d"]!) throw new UsageError("--for must be between 1s and 10 years");
  return ms;
}
