/**
 * The LoginResponse as a person reads it: who signed in, how risky it looked and why, the
 * password policy's verdict, the tokens (with a countdown), and the raw JSON beside it.
 */
import { toJsonString } from "@bufbuild/protobuf";
import { type LoginResponse, LoginResponseSchema } from "../gen/pb/identity/v1/auth_service_pb.ts";
import { abbreviate, byId, code, el, fillPairs, show, timeEl } from "./dom.ts";

/** What each risk signal means, in words (src/core/risk.ts). */
const SIGNAL_TEXT: Record<string, string> = {
  new_device: "New device: this browser has not signed in to the account before",
  new_network: "New network: an address outside the networks this account used",
  new_country: "New country",
  impossible_travel: "Impossible travel since the last sign-in",
  ip_denylisted: "Address on the deny list",
  ip_allowlisted: "Address on the allow list (lowers the risk)",
  recent_failures: "Recent failed sign-ins or codes",
  long_inactivity: "First sign-in after a long time",
  new_identity_link: "A new identity was linked to the account",
  upstream_mfa: "The identity provider did MFA (lowers the risk)",
};

/** What an `mfa_check_reason` or `password_warning` value means. */
const REASON_TEXT: Record<string, string> = {
  policy: "policy asks for a second factor for this user",
  mfa_enrollment_required: "MFA was called for but no second factor is set up: set one up now",
  expiring: "expires soon",
  expired_grace: "expired; still accepted during the grace period",
  expired: "expired: it must be changed",
};

/** Same JSON as the service writes: the proto's snake_case names, implicit fields present. */
export function loginJson(res: LoginResponse): string {
  return toJsonString(LoginResponseSchema, res, { useProtoFieldName: true, alwaysEmitImplicit: true, prettySpaces: 2 });
}

/** The claims of our access token, for display (the page never trusts them for anything). */
export function accessTokenClaims(token: string): Record<string, unknown> {
  try {
    const payload = token.split(".")[1] ?? "";
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    return JSON.parse(json) as Record<string, unknown>;
  } catch {
    return {};
  }
}

function yesNo(v: boolean): string {
  return v ? "yes" : "no";
}

function badge(text: string, kind: string): HTMLElement {
  return el("span", text, { class: `badge ${kind}` });
}

/**
 * Renders every card of the result section for `res`, the answer of `rpc`. A refresh carries no
 * risk assessment (only sign-ins are assessed): `signin` is the answer the session began with,
 * whose assessment the risk card keeps showing.
 */
export function renderLogin(res: LoginResponse, rpc: string, signin: LoginResponse = res): void {
  show("result", true);
  byId("raw-rpc").textContent = `(${rpc})`;
  byId("raw-json").textContent = loginJson(res);

  // User.
  const u = res.user;
  byId("user-avatar").textContent = (u?.username ?? "?").slice(0, 1).toUpperCase();
  byId("user-name").textContent = u?.username ?? "—";
  byId("user-email").textContent = u?.email ?? "no e-mail address";
  fillPairs(
    byId("user-fields"),
    u === undefined
      ? []
      : [
          ["User id", code(u.id)],
          ["Status", badge(u.status, u.status === "active" ? "ok" : "bad")],
          ["Created", timeEl(u.createdAt)],
        ],
  );

  // Risk.
  const assessed = res.riskAssessment === undefined ? signin : res;
  const risk = assessed.riskAssessment;
  const level = risk?.level ?? assessed.riskLevel ?? "unknown";
  byId("risk-note").textContent = assessed === res ? "" : `As assessed at sign-in: ${rpc} does not assess risk again.`;
  const levelEl = byId("risk-level");
  levelEl.textContent = `${level} risk`;
  levelEl.className = `badge ${level === "low" ? "ok" : level === "medium" ? "warn" : "bad"}`;
  byId("risk-score").textContent = String(risk?.score ?? 0);
  (byId("risk-meter") as HTMLMeterElement).value = risk?.score ?? 0;
  const signals = risk?.signals ?? [];
  byId("risk-signals").replaceChildren(
    ...(signals.length === 0
      ? [el("li", "None: nothing unusual about this sign-in.", { class: "empty" })]
      : signals.map((s) => {
          const li = el("li");
          li.append(code(s), " ", SIGNAL_TEXT[s] ?? "");
          return li;
        })),
  );
  const reason = assessed.mfaCheckReason;
  fillPairs(byId("risk-fields"), [
    ["MFA required", yesNo(risk?.requireMfa ?? assessed.requiresMfa)],
    [
      "Recommended",
      risk === undefined || risk.recommendedMfaMethods.length === 0 ? "—" : risk.recommendedMfaMethods.join(", "),
    ],
    ...(reason === undefined ? [] : [["MFA reason", reasonEl(reason)] as const]),
  ]);

  // Password policy: before the second factor the service tells no more than it must.
  const warning = res.passwordWarning;
  fillPairs(byId("password-fields"), [
    ["Must change password", res.mustChangePassword ? badge("yes", "bad") : "no"],
    ...(res.requiresMfa
      ? [["Expiry", "told after the second factor"] as const]
      : [
          [
            "Password expires in",
            res.passwordExpiresIn === undefined
              ? "never (no local password, or no expiry configured)"
              : `${res.passwordExpiresIn} day(s)`,
          ] as const,
          ["Warning", warning === undefined ? "none" : reasonEl(warning)] as const,
        ]),
  ]);

  // Tokens.
  const access = res.accessToken;
  show("tokens-none", access === undefined);
  show("tokens-some", access !== undefined);
  if (access !== undefined) {
    const claims = accessTokenClaims(access);
    fillPairs(byId("token-fields"), [
      ["Access token", code(abbreviate(access, 12))],
      ["Methods (amr)", code(Array.isArray(claims["amr"]) ? (claims["amr"] as string[]).join(", ") : "—")],
      ["Session (sid)", code(String(claims["sid"] ?? "—"))],
      ["Refresh token", code(abbreviate(res.refreshToken ?? "—", 8))],
      ["Type", res.tokenType],
    ]);
  }
}

function reasonEl(value: string): HTMLElement {
  const span = el("span");
  span.append(code(value), REASON_TEXT[value] === undefined ? "" : ` ${REASON_TEXT[value]}`);
  return span;
}
