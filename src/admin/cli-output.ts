import type { AdminUserDetail, AdminUserView, StatusChangeResult } from "../core/admin.ts";
import type { AuditEntry } from "../core/ports/admin.ts";

/** What the admin CLI prints: JSON for scripts (`--json`), tables and lines for people. */

/** One command's answer, in both forms. */
export interface CliOutput {
  text: string;
  json: unknown;
}

// ---- JSON --------------------------------------------------------------------------------------

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());

export function userJson(v: AdminUserView) {
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
    password:
      u.passwordChangedAt === null
        ? null
        : {
            changed_at: iso(u.passwordChangedAt),
            expires_in_days: v.passwordStatus.passwordExpiresIn ?? null,
            warning: v.passwordStatus.passwordWarning ?? null,
            forced_change: u.mustChangePassword,
          },
    created_at: iso(u.createdAt),
    last_signin_at: iso(u.lastSigninAt),
  };
}

export function identityJson(i: AdminUserDetail["identities"][number]) {
  return {
    id: i.id,
    provider: i.provider,
    issuer: i.issuer,
    subject: i.subject,
    email: i.email,
    email_verified: i.emailVerified,
    created_at: iso(i.createdAt),
    last_signin_at: iso(i.lastSigninAt),
  };
}

export function detailJson(d: AdminUserDetail) {
  return {
    ...userJson(d),
    identities: d.identities.map(identityJson),
    active_sessions: d.activeSessions,
    mfa: {
      factors: d.factors.map((f) => ({
        id: f.id,
        type: f.type,
        confirmed_at: iso(f.confirmedAt),
        created_at: iso(f.createdAt),
      })),
      unused_recovery_codes: d.unusedRecoveryCodes,
    },
  };
}

export function eventJson(e: AuditEntry) {
  return {
    id: e.id,
    at: iso(e.at),
    type: e.type,
    code: e.code,
    provider: e.provider,
    issuer: e.issuer,
    subject: e.subject,
    ip: e.ip,
    user_agent: e.userAgent,
    request_id: e.requestId,
    detail: e.detail,
  };
}

export function statusOut(r: StatusChangeResult, verb: string): CliOutput {
  const json = {
    user: userJson(r.user),
    previous_status: r.previousStatus,
    changed: r.changed,
    revoked_sessions: r.revokedSessions,
  };
  if (!r.changed) return { json, text: `${label(r.user)} is already ${r.user.user.status}; nothing changed\n` };
  const until =
    r.user.user.status === "locked"
      ? r.user.user.lockedUntil === null
        ? " until unlocked"
        : ` until ${iso(r.user.user.lockedUntil)}`
      : "";
  const sessions =
    r.revokedSessions > 0 ? `; ${r.revokedSessions} session${r.revokedSessions === 1 ? "" : "s"} ended` : "";
  return { json, text: `${verb} ${label(r.user)}${until} (was ${r.previousStatus})${sessions}\n` };
}

// ---- text --------------------------------------------------------------------------------------

export const label = (v: AdminUserView) => `${v.user.username} (${v.user.id})`;

function statusText(v: AdminUserView): string {
  const u = v.user;
  if (u.status !== "locked") return u.status;
  if (u.lockedUntil === null) return "locked";
  return v.effectiveStatus === "active"
    ? `active (lock ended ${iso(u.lockedUntil)})`
    : `locked until ${iso(u.lockedUntil)}`;
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
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return `${[line(head), ...rows.map(line)].join("\n")}\n`;
}

/** Control characters from stored data never reach the operator's terminal. */
const clean = (s: string | null | undefined): string =>
  s === null || s === undefined || s === "" ? "-" : s.replace(/[\p{Cc}]/gu, "?");
const time = (d: Date | null): string => (d === null ? "-" : iso(d)!.replace(/\.\d{3}Z$/, "Z"));

export function usersTable(users: AdminUserView[]): string {
  if (users.length === 0) return "no users\n";
  return table(
    ["ID", "USERNAME", "EMAIL", "STATUS", "PASSWORD", "CREATED", "LAST SIGN-IN"],
    users.map((v) => [
      v.user.id,
      clean(v.user.username),
      clean(v.user.email),
      statusText(v),
      passwordText(v),
      time(v.user.createdAt),
      time(v.user.lastSigninAt),
    ]),
  );
}

export function detailText(d: AdminUserDetail): string {
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
  out += kv(
    "mfa factors",
    d.factors.length === 0
      ? "none"
      : d.factors.map((f) => `${f.type}${f.confirmedAt === null ? " (unconfirmed)" : ""}`).join(", "),
  );
  out += kv("recovery codes", `${d.unusedRecoveryCodes} unused`);
  out += `\nidentities (${d.identities.length}):\n`;
  if (d.identities.length > 0) {
    out += table(
      ["  ID", "PROVIDER", "SUBJECT", "EMAIL", "LAST SIGN-IN", "ISSUER"],
      d.identities.map((i) => [
        `  ${i.id}`,
        clean(i.provider),
        clean(i.subject),
        clean(i.email),
        time(i.lastSigninAt),
        clean(i.issuer),
      ]),
    );
  }
  return out;
}

export function auditTable(events: AuditEntry[]): string {
  if (events.length === 0) return "no audit events\n";
  return table(
    ["AT", "TYPE", "CODE", "PROVIDER", "IP", "DETAIL"],
    events.map((e) => [
      time(e.at),
      e.type,
      clean(e.code),
      clean(e.provider),
      clean(e.ip),
      e.detail === null ? "-" : clean(JSON.stringify(e.detail)),
    ]),
  );
}
