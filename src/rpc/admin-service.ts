import { create, type JsonObject } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import type { AdminService as AdminCore, AdminUserDetail, AdminUserView, StatusChangeResult } from "../core/admin.ts";
import { DomainError } from "../core/errors.ts";
import {
  type ClientInfo,
  type FactorRecord,
  type IdentityRecord,
  USER_STATUSES,
  type UserStatus,
} from "../core/model.ts";
import { parseLockEnd, parseUserStatus } from "../core/user-status.ts";
import type { AuditEntry } from "../core/ports/admin.ts";
import {
  type AdminUser,
  AdminUserSchema,
  type AuditEvent,
  AuditEventSchema,
  AdminService,
  ForcePasswordChangeResponseSchema,
  GetUserResponseSchema,
  ListAuditEventsResponseSchema,
  ListUsersResponseSchema,
  type MfaFactor,
  MfaFactorSchema,
  UnlinkIdentityResponseSchema,
  type UserIdentity,
  UserIdentitySchema,
  type UserStatusChangeResponse,
  UserStatusChangeResponseSchema,
} from "../../gen/pb/identity/v1/admin_service_pb.ts";
import { adminActorOf } from "./admin-interceptor.ts";
import { rfc3339 } from "./auth-service.ts";
import { kClient } from "./context.ts";

/**
 * The core's admin service acting for one caller: `actor` is the admin key's name and `client`
 * the request's origin, both recorded in the audit trail of every change.
 */
export type AdminFor = (actor: string, client: ClientInfo) => AdminCore;

/**
 * Registers AdminService; every method runs behind the admin interceptor (admin keys only). The
 * handlers translate; the core's AdminService, the same one the admin tool uses, decides.
 */
export function registerAdminService(deps: { adminFor: AdminFor }) {
  const adminOf = (ctx: HandlerContext) => deps.adminFor(adminActorOf(ctx.values), ctx.values.get(kClient));
  return (router: ConnectRouter) => {
    router.service(AdminService, {
      async listUsers(req, ctx) {
        const users = await adminOf(ctx).listUsers({ status: statusOf(req.status), limit: req.limit ?? 50 });
        return create(ListUsersResponseSchema, { users: users.map(adminUserToPb) });
      },
      async getUser(req, ctx) {
        return detailToPb(await adminOf(ctx).showUser(req.userId));
      },
      async disableUser(req, ctx) {
        return statusChangeToPb(await adminOf(ctx).disable(req.userId, { reason: req.reason }));
      },
      async enableUser(req, ctx) {
        return statusChangeToPb(await adminOf(ctx).enable(req.userId));
      },
      async lockUser(req, ctx) {
        const until = req.until === undefined || req.until === "" ? null : lockEndOf(req.until);
        return statusChangeToPb(
          await adminOf(ctx).lock(req.userId, { until, reason: req.reason, revokeSessions: req.revokeSessions }),
        );
      },
      async unlockUser(req, ctx) {
        return statusChangeToPb(await adminOf(ctx).unlock(req.userId));
      },
      async forcePasswordChange(req, ctx) {
        const view = await adminOf(ctx).forcePasswordChange(req.userId, { clear: req.clear });
        return create(ForcePasswordChangeResponseSchema, { user: adminUserToPb(view) });
      },
      async unlinkIdentity(req, ctx) {
        const r = await adminOf(ctx).unlink(req.userId, req.identityId, { force: req.force });
        return create(UnlinkIdentityResponseSchema, {
          user: adminUserToPb(r.user),
          identity: identityToPb(r.identity),
          remainingIdentities: r.remainingIdentities,
          revokedSessions: r.revokedSessions,
        });
      },
      async listAuditEvents(req, ctx) {
        const { user, events } = await adminOf(ctx).audit(req.userId, req.limit ?? 20);
        return create(ListAuditEventsResponseSchema, { userId: user.user.id, events: events.map(auditEventToPb) });
      },
    });
  };
}

// ---- proto -> domain -----------------------------------------------------------------------------

function statusOf(s: string | undefined): UserStatus | undefined {
  if (s === undefined || s === "") return undefined;
  const status = parseUserStatus(s);
  if (status === null) throw new DomainError("invalid_request", `status must be one of ${USER_STATUSES.join(", ")}`);
  return status;
}

function lockEndOf(s: string): Date {
  const until = parseLockEnd(s);
  if (until === null)
    throw new DomainError(
      "invalid_request",
      "until must be an RFC 3339 time with its offset, like 2026-12-01T08:00:00Z",
    );
  return until;
}

// ---- domain -> proto -----------------------------------------------------------------------------

function adminUserToPb(v: AdminUserView): AdminUser {
  const u = v.user;
  const p = v.passwordStatus;
  return create(AdminUserSchema, {
    id: u.id,
    username: u.username,
    emailVerified: u.emailVerified,
    status: u.status,
    effectiveStatus: v.effectiveStatus,
    mustChangePassword: p.mustChangePassword,
    createdAt: rfc3339(u.createdAt),
    ...(u.email === null ? {} : { email: u.email }),
    ...(u.phone === null ? {} : { phone: u.phone }),
    // Exact to the millisecond, as `user_locked` reports it: a lock's end is never rounded earlier.
    ...(u.lockedUntil === null ? {} : { lockedUntil: u.lockedUntil.toISOString() }),
    ...(u.statusReason === null ? {} : { statusReason: u.statusReason }),
    ...(u.lastSigninAt === null ? {} : { lastSigninAt: rfc3339(u.lastSigninAt) }),
    ...(u.passwordChangedAt === null
      ? {}
      : {
          password: {
            changedAt: rfc3339(u.passwordChangedAt),
            forcedChange: u.mustChangePassword,
            ...(p.passwordExpiresIn === undefined ? {} : { expiresInDays: p.passwordExpiresIn }),
            ...(p.passwordWarning === undefined ? {} : { warning: p.passwordWarning }),
          },
        }),
  });
}

function identityToPb(i: IdentityRecord): UserIdentity {
  return create(UserIdentitySchema, {
    id: i.id,
    provider: i.provider,
    issuer: i.issuer,
    subject: i.subject,
    emailVerified: i.emailVerified,
    createdAt: rfc3339(i.createdAt),
    lastSigninAt: rfc3339(i.lastSigninAt),
    ...(i.email === null ? {} : { email: i.email }),
  });
}

function factorToPb(f: FactorRecord): MfaFactor {
  return create(MfaFactorSchema, {
    id: f.id,
    type: f.type,
    createdAt: rfc3339(f.createdAt),
    ...(f.confirmedAt === null ? {} : { confirmedAt: rfc3339(f.confirmedAt) }),
  });
}

function detailToPb(d: AdminUserDetail) {
  return create(GetUserResponseSchema, {
    user: adminUserToPb(d),
    identities: d.identities.map(identityToPb),
    activeSessions: d.activeSessions,
    mfaFactors: d.factors.map(factorToPb),
    unusedRecoveryCodes: d.unusedRecoveryCodes,
  });
}

function statusChangeToPb(r: StatusChangeResult): UserStatusChangeResponse {
  return create(UserStatusChangeResponseSchema, {
    user: adminUserToPb(r.user),
    previousStatus: r.previousStatus,
    changed: r.changed,
    revokedSessions: r.revokedSessions,
  });
}

function auditEventToPb(e: AuditEntry): AuditEvent {
  return create(AuditEventSchema, {
    id: e.id,
    at: e.at.toISOString(), // milliseconds kept: events of one second stay in order
    type: e.type,
    ...(e.code === null ? {} : { code: e.code }),
    ...(e.provider === null ? {} : { provider: e.provider }),
    ...(e.issuer === null ? {} : { issuer: e.issuer }),
    ...(e.subject === null ? {} : { subject: e.subject }),
    ...(e.ip === null ? {} : { ip: e.ip }),
    ...(e.userAgent === null ? {} : { userAgent: e.userAgent }),
    ...(e.requestId === null ? {} : { requestId: e.requestId }),
    // The store parsed the detail from JSON text, so it is JSON through and through.
    ...(e.detail === null ? {} : { detail: e.detail as JsonObject }),
  });
}
