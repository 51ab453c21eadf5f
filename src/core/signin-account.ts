import { DomainError } from "./errors.ts";
import { newId } from "./ids.ts";
import { isFresh } from "./last-seen.ts";
import type { ExternalIdentity, UserWithPassword } from "./model.ts";
import type { SigninHistory } from "./ports/risk-history.ts";
import { type AccountReader, type AccountWrite, SigninConflict, type SigninSnapshot } from "./ports/signin.ts";
import { assertActive } from "./user-status.ts";
import { baseUsername, normalizeEmail, suffixedUsername } from "./username.ts";

/** Which account a sign-in attaches to: linked already, linked now by verified e-mail, or created. */

/** The account a sign-in attaches to, with the write that does it. */
export type Resolved =
  | { kind: "existing"; userId: string; user: UserWithPassword; history: SigninHistory | null; write: AccountWrite }
  | { kind: "link"; userId: string; write: AccountWrite }
  | { kind: "create"; write: AccountWrite & { kind: "create" } };

/**
 * Account resolution: the identity's linked user, or a link to the owner of its verified
 * e-mail (under the provider's policy), or a new user (where the provider allows sign-up).
 */
export async function resolveAccount(
  accounts: Pick<AccountReader, "findByIdentity">,
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
      write: {
        kind: "existing",
        userId: linked.user.id,
        identityId: linked.identityId,
        identityFresh: isFresh(linked.identityLastSigninAt, now),
      },
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
        if ((await accounts.findByIdentity(identity.issuer, identity.subject)) !== null)
          throw new SigninConflict("identity");
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
    username: usernameTaken ? suffixedUsername(baseUsername(identity)) : baseUsername(identity),
    email,
    emailNormalized: email,
    emailVerified: newIdentity.emailVerified,
    phone: identity.phone,
    createdAt: now,
  };
  return { kind: "create", write: { kind: "create", user, identity: newIdentity } };
}
