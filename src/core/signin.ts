import { type AddressAttempt, type AddressLimit, limitKeyOf, UNLIMITED } from "./address-limit.ts";
import type { Clock } from "./clock.ts";
import type { NonceService } from "./nonces.ts";
import { DomainError, isDomainError } from "./errors.ts";
import { newId } from "./ids.ts";
import type { AdaptiveMfa, SigninAttempt, SigninGate } from "./adaptive-mfa.ts";
import type { AuthEvents } from "./auth-events.ts";
import type { AuditRecord, ClientInfo, ExternalIdentity, LoginResult, MfaChallengeResult, RiskSummary, UserWithPassword } from "./model.ts";
import type { SigninHistory } from "./ports/risk-history.ts";
import type { AuditLog } from "./ports/audit.ts";
import type { OpaqueTokens } from "./ports/sessions.ts";
import { SigninConflict, type AccountReader, type AccountWrite, type IdTokenVerifier, type SigninReader, type SigninSnapshot, type SigninSnapshotQuery, type SigninWriter } from "./ports/signin.ts";
import type { AccessTokenIssuer } from "./ports/signing-keys.ts";
import type { SingleUse } from "./ports/single-use.ts";
import type { MfaMethod } from "./risk.ts";
import { baseUsername, normalizeEmail, suffixedUsername } from "./username.ts";
import { assertActive } from "./user-status.ts";
import { loginResultOf } from "./login-result.ts";
import type { PasswordExpiryPolicy } from "./password-policy.ts";
import { quietRecorder } from "./quiet-audit.ts";

export interface SigninDeps {
  clock: Clock;
  verifier: IdTokenVerifier;
  /** The one read of a sign-in (identity, user, history, address failures). */
  reader: SigninReader;
  /** Re-reads after an identity race; its verified-e-mail lookup is not used here. */
  accounts: Pick<AccountReader, "findByIdentity">;
  writer: SigninWriter;
  audit: AuditLog;
  accessTokens: AccessTokenIssuer;
  opaqueTokens: OpaqueTokens;
  /** Absolute lifetime of a session and its refresh tokens, in seconds. */
  sessionTtlSeconds: number;
  /** Local-password expiry, for the login result's password fields (default: never expires). */
  passwordExpiry?: PasswordExpiryPolicy;
  /** Risk assessment and adaptive MFA (adaptive-mfa.ts); without it every sign-in opens a session. */
  adaptiveMfa?: AdaptiveMfa | undefined;
  /** Lifetime of an MFA challenge, in seconds (default 300). */
  challengeTtlSeconds?: number | undefined;
  /**
   * The per-address limit (address-limit.ts): an attempt is reserved before the token is
   * verified; the sign-in's one read refreshes the address's count. Absent: no limit.
   */
  addressLimit?: AddressLimit | undefined;
  /** Nonces issued by this service, for providers with `require_nonce: server`. */
  nonces?: Pick<NonceService, "check"> | undefined;
  onAuditFailure?: (error: unknown) => void;
  /** Told how every sign-in ended (metrics). */
  events?: AuthEvents | undefined;
}

export interface SigninInput {
  idToken: string;
  provider?: string | undefined;
  nonce?: string | undefined;
  client: ClientInfo;
  /** The device credential (`tdc_...`) a trusted device presents; anything else is ignored. */
  deviceCredential?: string | undefined;
}

const DEVICE_CREDENTIAL = /^tdc_[A-Za-z0-9_-]{43}$/;

export interface SigninService {
  /** Tokens, or, when risk calls for a second factor, a challenge to complete with VerifyMfa. */
  signinWithIdToken(input: SigninInput): Promise<LoginResult | MfaChallengeResult>;
}

/** The account a sign-in attaches to, with the write that does it. */
type Resolved =
  | { kind: "existing"; userId: string; user: UserWithPassword; history: SigninHistory | null; write: AccountWrite }
  | { kind: "link"; userId: string; write: AccountWrite }
  | { kind: "create"; write: AccountWrite & { kind: "create" } };

/** Authentication methods of a federated sign-in: `fed`, then what the provider says it did. */
function federatedAmr(identity: ExternalIdentity): string[] {
  return identity.amr.length > 0 ? ["fed", ...identity.amr] : ["fed"];
}

/** The audit record of a sign-in that reached its write (completed, or stopped at MFA). */
function signinAudit(
  type: "signin.succeeded" | "signin.mfa_required",
  identity: ExternalIdentity,
  userId: string,
  client: ClientInfo,
  at: Date,
  detail: Record<string, unknown>,
): AuditRecord {
  return { type, at, userId, provider: identity.provider.name, issuer: identity.issuer, subject: identity.subject, client, detail };
}

/**
 * The record of a new identity attached to an existing account by verified e-mail
 * (`identity.linked_by_email`): who, through which provider, and what proved it beyond the e-mail.
 */
function linkAudit(
  identity: Pick<ExternalIdentity, "issuer" | "subject"> & { provider: { name: string } },
  userId: string,
  client: ClientInfo,
  at: Date,
  detail: Record<string, unknown>,
): AuditRecord {
  return {
    type: "identity.linked_by_email",
    at,
    userId,
    provider: identity.provider.name,
    issuer: identity.issuer,
    subject: identity.subject,
    client,
    detail: { by: "verified_email", ...detail },
  };
}

/** Attempts at a sign-in whose write lost a race (identity, username, or the user's status). */
const MAX_WRITE_ATTEMPTS = 4;

/**
 * Sign-in with an external ID token: verify it, find or provision the local account under the
 * provider's policy, refuse non-active users, assess the risk, then open a session and issue
 * tokens, or, when MFA is required, store a challenge instead. Every attempt, accepted or
 * refused, leaves one audit record (with the risk signals, score and decision); refusals write
 * nothing else.
 *
 * A returning user's sign-in is one read (SigninReader) and one write (SigninWriter); a new
 * user's too; a link by e-mail adds the owner's history read.
 */
export function createSigninService(deps: SigninDeps): SigninService {
  const { clock, verifier, reader, accounts, writer, opaqueTokens } = deps;
  const recordQuietly = quietRecorder(deps.audit, deps.onAuditFailure);

  /** Rate limiting around one sign-in: an attempt is reserved before anything is verified. */
  async function signinWithIdToken(input: SigninInput): Promise<LoginResult | MfaChallengeResult> {
    // A limited address learns nothing about its token.
    const attempt = await (deps.addressLimit?.admit(limitKeyOf(input.client), "SigninWithIdToken") ?? UNLIMITED);
    try {
      const result = await signin(input, attempt);
      attempt.settle();
      return result;
    } catch (e) {
      attempt.settle(e);
      throw e;
    }
  }

  /**
   * The sign-in, top to bottom: verify the token, read everything at once, refuse an address over
   * the limit, resolve the account, assess the risk, then open a session or create a challenge.
   * A write that lost a race is tried again from the read; any refusal is audited once.
   */
  async function signin(input: SigninInput, attempt: AddressAttempt): Promise<LoginResult | MfaChallengeResult> {
    // What a refusal's audit record names, as far as the sign-in got.
    let identity: ExternalIdentity | undefined;
    let userId: string | undefined;
    let riskDetail: Record<string, unknown> | undefined;
    let riskLevel: RiskSummary["level"] | undefined;
    try {
      identity = await verifyIdToken(input);
      const verified = identity;
      const uses = singleUses(verified, input.client);
      // One SHA-256, only when a credential is presented; the read finds it for this user only.
      const trustedDevice = input.deviceCredential !== undefined && DEVICE_CREDENTIAL.test(input.deviceCredential)
        ? opaqueTokens.hash(input.deviceCredential)
        : null;
      let usernameTaken = false;
      for (let attempt = 1; ; attempt++) {
        const now = clock.now();
        try {
          const snapshot = await reader.readSignin(snapshotQuery(verified, input.client, now, trustedDevice));
          observeAddressFailures(snapshot, input.client);
          const account = await resolveAccount(verified, snapshot, now, usernameTaken);
          userId = account.kind === "create" ? account.write.user.id : account.userId;
          if (account.kind === "existing") assertActive(account.user, now);
          // Risk is assessed on every sign-in, before anything is written: the federated path is
          // never an MFA bypass.
          const gate = deps.adaptiveMfa === undefined ? null : await deps.adaptiveMfa.evaluate(riskQuery(verified, account, input.client, now, trustedDevice));
          riskDetail = gate?.auditDetail;
          riskLevel = gate?.summary.level;
          refuseWithoutFactor(gate);
          const result = gate?.decision.kind === "challenge"
            ? await createChallenge(verified, account.write, now, input.client, gate, gate.decision.methods, uses)
            : await openSession(verified, account.write, now, input.client, gate, uses);
          deps.events?.signin(verified.provider.name, "kind" in result ? "mfa_required" : "success", riskLevel);
          return result;
        } catch (e) {
          if (lostRace(e, attempt) === "username") usernameTaken = true;
        }
      }
    } catch (e) {
      throw await refusal(e, attempt, input, identity, userId, riskDetail, riskLevel);
    }
  }

  function verifyIdToken(input: SigninInput): Promise<ExternalIdentity> {
    if (input.idToken === "") throw new DomainError("id_token_required", "id_token is required");
    return verifier.verify(input.idToken, { provider: input.provider, nonce: input.nonce });
  }

  /**
   * Rate limiting, second half: the sign-in's read counted the address's failures; tell the limit.
   * A verified token is not refused for them (others behind the address failed, not this caller);
   * should this sign-in still fail, the limit answers for it (`refusal`).
   */
  function observeAddressFailures(snapshot: SigninSnapshot, client: ClientInfo): void {
    const key = limitKeyOf(client);
    if (deps.addressLimit === undefined || key === null) return;
    deps.addressLimit.observe(key, snapshot.ipFailures);
  }

  function riskQuery(identity: ExternalIdentity, account: Resolved, client: ClientInfo, now: Date, trustedDevice: string | null): SigninAttempt {
    return {
      identity,
      userId: account.kind === "create" ? null : account.userId,
      account: account.kind,
      client,
      now,
      trustedDevice,
      // An existing user's history came with the read; a link reads the owner's.
      ...(account.kind === "existing" && account.history !== null ? { history: account.history } : {}),
    };
  }

  /** Policy `deny`: a sign-in that needs a second factor the account does not have is refused. */
  function refuseWithoutFactor(gate: SigninGate | null): void {
    if (gate?.decision.kind !== "deny") return;
    throw new DomainError(
      "mfa_enrollment_required",
      "this sign-in needs a second factor and the account has none; sign in from a known device and enroll one",
    );
  }

  /**
   * A write that lost a race is tried again (up to MAX_WRITE_ATTEMPTS): the identity's next read
   * finds the winner's link, a taken username gets a suffix, a user disabled or locked meanwhile
   * is refused by the next read. A replayed token is refused; anything else is rethrown.
   */
  function lostRace(e: unknown, attempt: number): SigninConflict["target"] {
    if (e instanceof SigninConflict && e.target === "replay") {
      throw new DomainError("id_token_replayed", "this ID token (or its nonce) was already used to sign in; get a fresh one from the provider");
    }
    if (!(e instanceof SigninConflict) || attempt >= MAX_WRITE_ATTEMPTS) throw e;
    return e.target;
  }

  /**
   * A refused sign-in: counted, and audited once with what it got to (the address limit's own
   * refusals are tallied instead, address-limit.ts). Returns the error the caller gets.
   */
  async function refusal(
    e: unknown,
    attempt: AddressAttempt,
    input: SigninInput,
    identity: ExternalIdentity | undefined,
    userId: string | undefined,
    riskDetail: Record<string, unknown> | undefined,
    riskLevel: RiskSummary["level"] | undefined,
  ): Promise<unknown> {
    // An address over its limit is answered by the limit, which tallies instead of a row each.
    const answer = await attempt.fail(e);
    const code = isDomainError(answer) ? answer.code : "internal";
    deps.events?.signin(identity?.provider.name ?? input.provider, code, riskLevel);
    if (code === "rate_limited") return answer;
    await recordQuietly({
      type: "signin.failed",
      at: clock.now(),
      code,
      userId,
      provider: identity?.provider.name ?? input.provider?.slice(0, 64),
      issuer: identity?.issuer,
      subject: identity?.subject,
      client: input.client,
      detail: riskDetail === undefined ? undefined : { risk: riskDetail },
    });
    return e instanceof SigninConflict ? new DomainError("internal", "sign-in could not be completed", { cause: e }) : e;
  }

  function snapshotQuery(identity: ExternalIdentity, client: ClientInfo, now: Date, trustedDevice: string | null): SigninSnapshotQuery {
    const email = normalizeEmail(identity.email);
    const limit = deps.addressLimit;
    const key = limitKeyOf(client);
    return {
      issuer: identity.issuer,
      subject: identity.subject,
      verifiedEmail: identity.emailVerified ? email : null,
      ipFailures:
        limit === undefined || key === null
          ? null
          : { ip: key, since: new Date(now.getTime() - limit.windowSeconds * 1000), cap: limit.max },
      history: deps.adaptiveMfa?.historyQuery(client, now, trustedDevice) ?? null,
    };
  }

  /**
   * Account resolution: the identity's linked user, or a link to the owner of its verified
   * e-mail (under the provider's policy), or a new user (where the provider allows sign-up).
   */
  async function resolveAccount(
    identity: ExternalIdentity,
    snapshot: SigninSnapshot,
    now: Date,
    usernameTaken: boolean,
  ): Promise<Resolved> {
    const linked = snapshot.linked;
    if (linked !== null) {
      return {
        kind: "existing",
        userId: linked.user.id,
        user: linked.user,
        history: linked.history,
        write: { kind: "existing", userId: linked.user.id, identityId: linked.identityId },
      };
    }
    const email = normalizeEmail(identity.email);
    const newIdentity = {
      id: newId("idn"),
      issuer: identity.issuer,
      subject: identity.subject,
      provider: identity.provider.name,
      email,
      emailVerified: identity.emailVerified && email !== null,
    };
    // Only a verified e-mail says anything about who owns an existing account. An unverified one
    // is stored as unverified and never matched, so nobody can claim or block another's address.
    if (newIdentity.emailVerified && email !== null) {
      const owners = snapshot.emailOwners;
      const owner = owners[0];
      if (owner !== undefined) {
        if (identity.provider.linkByEmail !== "verified" || owners.length > 1) {
          // A concurrent first sign-in of this same identity may have created the owner since
          // our read: then this is that user, not a conflict (read again).
          if ((await accounts.findByIdentity(identity.issuer, identity.subject)) !== null) throw new SigninConflict("identity");
          throw new DomainError(
            "account_exists",
            "an account with this e-mail address already exists; sign in with the method used before",
            { detail: { provider: identity.provider.name } },
          );
        }
        assertActive(owner, now);
        return { kind: "link", userId: owner.id, write: { kind: "link", userId: owner.id, identity: newIdentity } };
      }
    }
    if (identity.provider.signup !== "allow") {
      throw new DomainError(
        "signup_disabled",
        `provider "${identity.provider.name}" does not allow new accounts; ask an administrator to create yours`,
        { detail: { provider: identity.provider.name } },
      );
    }
    const user = {
      id: newId("usr"),
      username: usernameTaken
        ? suffixedUsername(baseUsername(identity))
        : baseUsername(identity),
      email,
      emailNormalized: email,
      emailVerified: newIdentity.emailVerified,
      phone: identity.phone,
      createdAt: now,
    };
    return { kind: "create", write: { kind: "create", user, identity: newIdentity } };
  }

  /** The sign-in completes: in one transaction the account, the session, its first refresh token and what was seen. */
  async function openSession(
    identity: ExternalIdentity,
    account: AccountWrite,
    now: Date,
    client: ClientInfo,
    gate: SigninGate | null,
    uses: readonly SingleUse[],
  ): Promise<LoginResult> {
    const sessionId = newId("ses");
    const refresh = opaqueTokens.issue("rt");
    const expiresAt = new Date(now.getTime() + deps.sessionTtlSeconds * 1000);
    const amr = federatedAmr(identity);
    const userId = account.kind === "create" ? account.user.id : account.userId;
    const user = await writer.commitSignin({
        account,
        at: now,
        uses,
        session: {
          id: sessionId,
          userId,
          provider: identity.provider.name,
          amr,
          client,
          createdAt: now,
          expiresAt,
        },
        refreshToken: {
          id: newId("rtk"),
          sessionId,
          tokenHash: refresh.hash,
          createdAt: now,
          expiresAt,
        },
        seen: gate?.seen,
        audit: signinAudit("signin.succeeded", identity, userId, client, now, {
          account: account.kind,
          ...(gate === null ? {} : { risk: gate.auditDetail }),
        }),
    });
    if (account.kind === "link") {
      // Linked by e-mail without a second factor (the account has none, or a challenge would
      // have been asked for): the weaker case of account linking, so it gets an event of its own.
      await recordQuietly(linkAudit(identity, userId, client, now, { second_factor: "none", risk_level: gate?.summary.level ?? null }));
    }
    const accessToken = await deps.accessTokens.issue({ userId, sessionId, amr, provider: identity.provider.name, authTime: now }, now);
    const result = loginResultOf(deps, user, sessionId, accessToken, refresh.token, now);
    if (gate !== null) result.risk = gate.summary;
    if (gate?.decision.kind === "allow_unenrolled") result.mfaCheckReason = "mfa_enrollment_required";
    return result;
  }

  /**
   * The sign-in stops at MFA: in one transaction the account is created or linked if it is new,
   * and the challenge is stored (hashed token, bound to user, identity, provider, device and the
   * risk); no session and no token exist until VerifyMfa completes it.
   */
  async function createChallenge(
    identity: ExternalIdentity,
    account: AccountWrite,
    now: Date,
    client: ClientInfo,
    gate: SigninGate,
    methods: readonly MfaMethod[],
    uses: readonly SingleUse[],
  ): Promise<MfaChallengeResult> {
    const token = opaqueTokens.issue("chg");
    const userId = account.kind === "create" ? account.user.id : account.userId;
    const expiresAt = new Date(now.getTime() + (deps.challengeTtlSeconds ?? 300) * 1000);
    const challengeId = newId("chl");
    const reason = gate.summary.reason ?? "policy";
    const user = await writer.commitSignin({
      account,
      at: now,
      // The challenge is this token's use: completing it needs the challenge, not the token.
      uses,
      challenge: {
        id: challengeId,
        tokenHash: token.hash,
        userId,
        identityId: account.kind === "existing" ? account.identityId : account.identity.id,
        provider: identity.provider.name,
        deviceKey: gate.device?.key ?? null,
        ip: client.ip,
        userAgent: client.userAgent,
        amr: federatedAmr(identity),
        risk: gate.summary,
        context: gate.seen,
        methods,
        pendingIdentity: account.kind === "link" ? account.identity : null,
        clientId: client.oauthClientId ?? null,
        createdAt: now,
        expiresAt,
      },
      audit: signinAudit("signin.mfa_required", identity, userId, client, now, {
        account: account.kind,
        challenge_id: challengeId,
        risk: gate.auditDetail,
      }),
    });
    return { kind: "mfa_required", user, challengeToken: token.token, expiresAt, methods: [...methods], reason, risk: gate.summary };
  }

  /** What this sign-in spends: the token itself, and a server-issued nonce. */
  function singleUses(identity: ExternalIdentity, client: ClientInfo): SingleUse[] {
    const uses: SingleUse[] = identity.use === null ? [] : [identity.use];
    if (identity.serverNonce !== null) {
      if (deps.nonces === undefined) throw new DomainError("internal", "server-issued nonces are not configured");
      uses.push(deps.nonces.check(identity.serverNonce, client, clock.now()));
    }
    return uses;
  }

  return { signinWithIdToken };
}
