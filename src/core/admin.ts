import type { Clock } from "./clock.ts";
import { DomainError } from "./errors.ts";
import type { AuditRecord, ClientInfo, FactorRecord, IdentityRecord, PasswordStatus, UserStatus } from "./model.ts";
import { type PasswordExpiryPolicy, passwordStatusOf } from "./password-policy.ts";
import type { AdminStore, AdminUserRecord, AuditEntry } from "./ports/admin.ts";
import { normalizeEmail } from "./username.ts";

export interface AdminDeps {
  clock: Clock;
  store: AdminStore;
  expiry: PasswordExpiryPolicy;
  /** Who is acting (for example the operating-system user running the admin tool), for the audit trail. */
  actor: string;
  /** Where the action comes from, for the audit trail (for example user agent "admin-cli"). */
  client: ClientInfo;
}

/** A user as operators see it: the record, its password status and its status in force now. */
export interface AdminUserView {
  user: AdminUserRecord;
  /** `locked` with an end in the past is `active` in force. */
  effectiveStatus: UserStatus;
  passwordStatus: PasswordStatus;
}

export interface AdminUserDetail extends AdminUserView {
  identities: IdentityRecord[];
  activeSessions: number;
  factors: FactorRecord[];
  unusedRecoveryCodes: number;
}

export interface StatusChangeResult {
  user: AdminUserView;
  previousStatus: UserStatus;
  /** False when the user already was in the requested state (nothing written). */
  changed: boolean;
  revokedSessions: number;
}

export interface UnlinkResult {
  user: AdminUserView;
  identity: IdentityRecord;
  remainingIdentities: number;
  revokedSessions: number;
}

export interface AdminService {
  listUsers(filter: { status?: UserStatus | undefined; limit: number }): Promise<AdminUserView[]>;
  /** `ref` is a user id (`usr_…`), a username or an e-mail address. */
  showUser(ref: string): Promise<AdminUserDetail>;
  /** Refuses sign-in and refresh with `user_disabled`; ends every session in the same transaction. */
  disable(ref: string, options?: { reason?: string | undefined }): Promise<StatusChangeResult>;
  /** Back to `active` from any status; clears the lock end and the reason. */
  enable(ref: string): Promise<StatusChangeResult>;
  /**
   * Refuses sign-in and refresh with `user_locked` until `until` (null: until unlocked). Sessions
   * stay unless `revokeSessions`: their refresh is refused while locked and works again after.
   */
  lock(
    ref: string,
    options: { until: Date | null; reason?: string | undefined; revokeSessions?: boolean },
  ): Promise<StatusChangeResult>;
  unlock(ref: string): Promise<StatusChangeResult>;
  /** Sets (or with `clear`, clears) the operator's must-change-password flag. */
  forcePasswordChange(ref: string, options?: { clear?: boolean }): Promise<AdminUserView>;
  /**
   * Removes an external identity (`idn_…`, or a provider name the user has exactly one identity
   * of) and ends the user's sessions signed in through that provider. Removing the user's last
   * identity needs `force`: this service signs in only with external identities, so the user could
   * not sign in any more (a local password does not count).
   */
  unlink(ref: string, identityRef: string, options?: { force?: boolean }): Promise<UnlinkResult>;
  audit(ref: string, limit: number): Promise<{ user: AdminUserView; events: AuditEntry[] }>;
}

const MAX_REASON = 500;

export function createAdminService(deps: AdminDeps): AdminService {
  const { clock, store } = deps;

  function view(user: AdminUserRecord, now: Date): AdminUserView {
    const lockOver = user.status === "locked" && user.lockedUntil !== null && user.lockedUntil <= now;
    return {
      user,
      effectiveStatus: lockOver ? "active" : user.status,
      passwordStatus: passwordStatusOf(user, now, deps.expiry),
    };
  }

  async function resolve(ref: string): Promise<AdminUserRecord> {
    const r = ref.trim();
    if (r === "") throw new DomainError("invalid_request", "name a user by id (usr_…), username or e-mail address");
    if (r.startsWith("usr_")) {
      const byId = await store.findUserById(r);
      if (byId !== null) return byId;
    }
    if (r.includes("@")) {
      const email = normalizeEmail(r);
      const users = email === null ? [] : await store.findUsersByEmail(email);
      if (users.length > 1) {
        throw new DomainError("user_ambiguous", `${users.length} users have the e-mail address ${r}; name one by id`, {
          detail: { candidates: users.map((u) => u.id).join(",") },
        });
      }
      if (users[0] !== undefined) return users[0];
    } else {
      const byName = await store.findUserByUsername(r.toLowerCase());
      if (byName !== null) return byName;
    }
    throw new DomainError("user_not_found", `no user ${r}`);
  }

  function auditOf(type: string, at: Date, userId: string, detail: Record<string, unknown>): AuditRecord {
    return { type, at, userId, client: deps.client, detail: { actor: deps.actor, ...detail } };
  }

  function reasonOf(reason: string | undefined): string | null {
    if (reason === undefined || reason.trim() === "") return null;
    return reason.trim().slice(0, MAX_REASON);
  }

  async function changeStatus(
    user: AdminUserRecord,
    type: string,
    next: { status: UserStatus; lockedUntil: Date | null; reason: string | null; revokeSessions: string | null },
    now: Date,
  ): Promise<StatusChangeResult> {
    const { revokedSessions } = await store.setStatus({
      userId: user.id,
      ...next,
      at: now,
      audit: auditOf(type, now, user.id, {
        previous_status: user.status,
        ...(next.lockedUntil === null ? {} : { locked_until: next.lockedUntil.toISOString() }),
      }),
    });
    const after: AdminUserRecord = {
      ...user,
      status: next.status,
      lockedUntil: next.lockedUntil,
      statusReason: next.reason,
    };
    return { user: view(after, now), previousStatus: user.status, changed: true, revokedSessions };
  }

  return {
    async listUsers(filter) {
      if (!Number.isInteger(filter.limit) || filter.limit < 1 || filter.limit > 1000) {
        throw new DomainError("invalid_request", "limit must be between 1 and 1000");
      }
      const now = clock.now();
      return (await store.listUsers(filter)).map((u) => view(u, now));
    },

    async showUser(ref) {
      const user = await resolve(ref);
      const now = clock.now();
      const detail = await store.userDetail(user.id, now);
      if (detail === null) throw new DomainError("user_not_found", `no user ${ref}`);
      return {
        ...view(detail.user, now),
        identities: detail.identities,
        activeSessions: detail.activeSessions,
        factors: detail.factors,
        unusedRecoveryCodes: detail.unusedRecoveryCodes,
      };
    },

    async disable(ref, options = {}) {
      const user = await resolve(ref);
      // Always written, even when already disabled: it also ends any session left behind.
      return changeStatus(
        user,
        "admin.user_disabled",
        {
          status: "disabled",
          lockedUntil: null,
          reason: reasonOf(options.reason),
          revokeSessions: "user_disabled",
        },
        clock.now(),
      );
    },

    async enable(ref) {
      const user = await resolve(ref);
      const now = clock.now();
      if (user.status === "active")
        return { user: view(user, now), previousStatus: user.status, changed: false, revokedSessions: 0 };
      return changeStatus(
        user,
        "admin.user_enabled",
        { status: "active", lockedUntil: null, reason: null, revokeSessions: null },
        now,
      );
    },

    async lock(ref, options) {
      const user = await resolve(ref);
      const now = clock.now();
      if (options.until !== null && options.until <= now) {
        throw new DomainError("invalid_request", "the lock must end in the future");
      }
      if (user.status === "disabled" || user.status === "pending") {
        // A lock can end by itself; turning a disabled or pending account into one would open it.
        throw new DomainError(
          "user_status_conflict",
          `user ${user.username} is ${user.status}; a lock would weaken that`,
        );
      }
      return changeStatus(
        user,
        "admin.user_locked",
        {
          status: "locked",
          lockedUntil: options.until,
          reason: reasonOf(options.reason),
          revokeSessions: options.revokeSessions === true ? "user_locked" : null,
        },
        now,
      );
    },

    async unlock(ref) {
      const user = await resolve(ref);
      if (user.status !== "locked") {
        throw new DomainError("user_status_conflict", `user ${user.username} is ${user.status}, not locked`);
      }
      return changeStatus(
        user,
        "admin.user_unlocked",
        { status: "active", lockedUntil: null, reason: null, revokeSessions: null },
        clock.now(),
      );
    },

    async forcePasswordChange(ref, options = {}) {
      const user = await resolve(ref);
      const now = clock.now();
      const value = options.clear !== true;
      if (value && user.passwordChangedAt === null) {
        throw new DomainError("password_not_set", `user ${user.username} has no local password to change`);
      }
      await store.setMustChangePassword(
        user.id,
        value,
        now,
        auditOf(value ? "admin.password_change_forced" : "admin.password_change_unforced", now, user.id, {}),
      );
      return view({ ...user, mustChangePassword: value }, now);
    },

    async unlink(ref, identityRef, options = {}) {
      const user = await resolve(ref);
      const now = clock.now();
      const detail = await store.userDetail(user.id, now);
      if (detail === null) throw new DomainError("user_not_found", `no user ${ref}`);
      const byId = detail.identities.find((i) => i.id === identityRef);
      const byProvider = detail.identities.filter((i) => i.provider === identityRef);
      if (byId === undefined && byProvider.length > 1) {
        throw new DomainError(
          "user_ambiguous",
          `user ${user.username} has ${byProvider.length} identities of provider ${identityRef}; name one by id`,
          {
            detail: { candidates: byProvider.map((i) => i.id).join(",") },
          },
        );
      }
      const identity = byId ?? byProvider[0];
      if (identity === undefined) {
        throw new DomainError("identity_not_found", `user ${user.username} has no identity ${identityRef}`);
      }
      const outcome = await store.unlinkIdentity({
        userId: user.id,
        identityId: identity.id,
        allowLast: options.force === true,
        revokeSessionsOfProvider: identity.provider,
        at: now,
        audit: auditOf("admin.identity_unlinked", now, user.id, {
          identity_id: identity.id,
          provider: identity.provider,
          forced: options.force === true,
        }),
      });
      if (outcome.kind === "identity_not_found") {
        throw new DomainError("identity_not_found", `user ${user.username} has no identity ${identityRef} (any more)`);
      }
      if (outcome.kind === "last_identity") {
        throw new DomainError(
          "last_identity",
          `${identity.id} is the last identity of user ${user.username}; without it they cannot sign in (unlink with force, --force in the admin tool, to remove it anyway)`,
        );
      }
      return {
        user: view(user, now),
        identity,
        remainingIdentities: detail.identities.length - 1,
        revokedSessions: outcome.revokedSessions,
      };
    },

    async audit(ref, limit) {
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
        throw new DomainError("invalid_request", "limit must be between 1 and 1000");
      }
      const user = await resolve(ref);
      return { user: view(user, clock.now()), events: await store.listAudit(user.id, limit) };
    },
  };
}
