import { type AddressAttempt, type AddressLimit, limitKeyOf, UNLIMITED } from "./address-limit.ts";
import type { Clock } from "./clock.ts";
import type { NonceService } from "./nonces.ts";
import { DomainError, isDomainError } from "./errors.ts";
import type { AdaptiveMfa, SigninAttempt, SigninGate } from "./adaptive-mfa.ts";
import type { AuthEvents } from "./auth-events.ts";
import type { ClientInfo, ExternalIdentity, LoginResult, MfaChallengeResult, RiskSummary } from "./model.ts";
import type { AuditLog } from "./ports/audit.ts";
import type { OpaqueTokens } from "./ports/sessions.ts";
import {
  type AccountReader,
  type IdTokenVerifier,
  SigninConflict,
  type SigninReader,
  type SigninSnapshot,
  type SigninSnapshotQuery,
  type SigninWriter,
} from "./ports/signin.ts";
import type { AccessTokenIssuer } from "./ports/signing-keys.ts";
import type { SingleUse } from "./ports/single-use.ts";
import { normalizeEmail } from "./username.ts";
import { assertActive } from "./user-status.ts";
import type { PasswordExpiryPolicy } from "./password-policy.ts";
import { quietRecorder } from "./quiet-audit.ts";
import { type Resolved, resolveAccount } from "./signin-account.ts";
import { createSigninCommit } from "./signin-commit.ts";

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
 * user's too; a link by e-mail adds the owner's history read. Beside this file: which account it
 * attaches to (`signin-account.ts`) and its one write (`signin-commit.ts`).
 */
export function createSigninService(deps: SigninDeps): SigninService {
  const { clock, verifier, reader, accounts, opaqueTokens } = deps;
  const recordQuietly = quietRecorder(deps.audit, deps.onAuditFailure);
  const commit = createSigninCommit(deps);

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
      const trustedDevice =
        input.deviceCredential !== undefined && DEVICE_CREDENTIAL.test(input.deviceCredential)
          ? opaqueTokens.hash(input.deviceCredential)
          : null;
      let usernameTaken = false;
      for (let attempt = 1; ; attempt++) {
        const now = clock.now();
        try {
          const snapshot = await reader.readSignin(snapshotQuery(verified, input.client, now, trustedDevice));
          observeAddressFailures(snapshot, input.client);
          const account = await resolveAccount(accounts, verified, snapshot, now, usernameTaken);
          userId = account.kind === "create" ? account.write.user.id : account.userId;
          if (account.kind === "existing") assertActive(account.user, now);
          // Risk is assessed on every sign-in, before anything is written: the federated path is
          // never an MFA bypass.
          const gate =
            deps.adaptiveMfa === undefined
              ? null
              : await deps.adaptiveMfa.evaluate(riskQuery(verified, account, input.client, now, trustedDevice));
          riskDetail = gate?.auditDetail;
          riskLevel = gate?.summary.level;
          refuseWithoutFactor(gate);
          const { write } = account;
          const result =
            gate?.decision.kind === "challenge"
              ? await commit.createChallenge(verified, write, now, input.client, gate, gate.decision.methods, uses)
              : await commit.openSession(verified, write, now, input.client, gate, uses);
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

  function riskQuery(
    identity: ExternalIdentity,
    account: Resolved,
    client: ClientInfo,
    now: Date,
    trustedDevice: string | null,
  ): SigninAttempt {
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
      throw new DomainError(
        "id_token_replayed",
        "this ID token (or its nonce) was already used to sign in; get a fresh one from the provider",
      );
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
    return e instanceof SigninConflict
      ? new DomainError("internal", "sign-in could not be completed", { cause: e })
      : e;
  }

  function snapshotQuery(
    identity: ExternalIdentity,
    client: ClientInfo,
    now: Date,
    trustedDevice: string | null,
  ): SigninSnapshotQuery {
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
