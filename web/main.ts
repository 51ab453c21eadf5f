/**
 * The web app served at `/`: sign in with an ID token (minted by the dev issuer in dev mode),
 * answer an MFA challenge (a code or a passkey), set up TOTP, add and manage passkeys
 * (@simplewebauthn/browser), see and end sessions, refresh tokens before they expire.
 * Every call goes through @connectrpc/connect-web over Connect or gRPC-Web (the switch at the
 * top); tokens live in this module's memory only.
 */
import type { LoginResponse } from "../gen/pb/identity/v1/auth_service_pb.ts";
import type { Session } from "../gen/pb/identity/v1/user_service_pb.ts";
import type { Passkey } from "../gen/pb/identity/v1/mfa_service_pb.ts";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { startAuthentication, startRegistration } from "@simplewebauthn/browser";
import {
  type Api,
  createApi,
  describeProblem,
  deviceCredential,
  deviceId,
  dropDeviceCredential,
  forgetDevice,
  mintDevIdToken,
  type Problem,
  type Protocol,
  PROTOCOL_NAMES,
  storeDeviceCredential,
} from "./api.ts";
import { abbreviate, byId, clock, code, el, show, timeEl } from "./dom.ts";
import { renderLogin } from "./login-view.ts";
import { qrSvg } from "./qr.ts";

interface SignedIn {
  accessToken: string;
  refreshToken: string;
  /** When the access token expires, in this page's clock (ms). */
  expiresAt: number;
}

/** Refresh this long before the access token expires (or at half its life when that is shorter). */
const REFRESH_AHEAD_SECONDS = 60;
const PROTOCOL_KEY = "idtoken-signin.protocol";
const DEV_ISSUER = document.documentElement.dataset["devIssuer"] === "on";

let signedIn: SignedIn | null = null;
let challenge: { token: string } | null = null;
/** The answer that began the session (sign-in or MFA): refreshes carry no risk assessment. */
let sessionStart: LoginResponse | null = null;
let refreshTimer: number | undefined;
let rotations = 0;
let api: Api = connect(storedProtocol());

function storedProtocol(): Protocol {
  return localStorage.getItem(PROTOCOL_KEY) === "grpc-web" ? "grpc-web" : "connect";
}

function connect(protocol: Protocol): Api {
  return createApi(
    protocol,
    () => signedIn?.accessToken ?? null,
    ({ rpc, protocol, ms, ok }) => {
      byId("last-call").textContent =
        `Last call: ${rpc} over ${PROTOCOL_NAMES[protocol]}, ${Math.round(ms)} ms${ok ? "" : " (failed)"}`;
    },
  );
}

// --- feedback --------------------------------------------------------------------------------

function showProblem(p: Problem): void {
  byId("error-code").textContent = p.code;
  byId("error-status").textContent = p.status === null ? "" : `(${p.status})`;
  byId("error-message").textContent = p.message;
  // A factor change refused for want of a recent second factor: offer the ways this user has.
  const methods = signedIn === null ? [] : (p.stepUpMethods ?? []);
  show("step-up", methods.length > 0);
  show("step-up-passkey", methods.includes("webauthn"));
  show("step-up-code-form", methods.includes("totp"));
  show("error", true);
  byId("error").focus();
}

function clearFeedback(): void {
  show("error", false);
  show("notice", false);
}

function notice(text: string): void {
  byId("notice").textContent = text;
  show("notice", true);
}

/**
 * Runs a user action: feedback cleared, the triggering control disabled while it runs, any
 * failure shown as code + message (never a blank page).
 */
function action(control: HTMLButtonElement | HTMLFormElement, work: () => Promise<void>): void {
  clearFeedback();
  const buttons = control instanceof HTMLFormElement ? [...control.querySelectorAll("button")] : [control];
  for (const b of buttons) b.disabled = true;
  control.setAttribute("aria-busy", "true");
  work()
    .catch((e: unknown) => showProblem(describeProblem(e)))
    .finally(() => {
      for (const b of buttons) b.disabled = false;
      control.removeAttribute("aria-busy");
    });
}

function onSubmit(id: string, work: (form: HTMLFormElement) => Promise<void>): void {
  const form = byId<HTMLFormElement>(id);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    action(form, () => work(form));
  });
}

function onClick(id: string, work: () => Promise<void>): void {
  const button = byId<HTMLButtonElement>(id);
  button.addEventListener("click", () => action(button, work));
}

function field(form: HTMLFormElement, name: string): string {
  return String(new FormData(form).get(name) ?? "").trim();
}

// --- sign-in, MFA, tokens --------------------------------------------------------------------

async function signin(idToken: string, provider: string | undefined): Promise<void> {
  const credential = deviceCredential();
  const res = await api.auth.signinWithIdToken({
    idToken,
    ...(provider ? { provider } : {}),
    deviceId: deviceId(),
    ...(credential === null ? {} : { deviceCredential: credential }),
  });
  handleLogin(res, "SigninWithIdToken");
}

function handleLogin(res: LoginResponse, rpc: string): void {
  if (res.deviceCredential !== undefined) {
    // Shown once by the service: kept in this browser only, and not displayed.
    storeDeviceCredential(res.deviceCredential);
    res.deviceCredential = "(kept in this browser)";
  }
  showTrust();
  if (rpc !== "RefreshToken") sessionStart = res;
  renderLogin(res, rpc, sessionStart ?? res);
  if (res.requiresMfa) {
    challenge = { token: res.challengeToken ?? "" };
    const methods = byId<HTMLSelectElement>("challenge-method");
    const codeMethods = res.requiredMfaMethods.filter((m) => m !== "webauthn");
    methods.replaceChildren(
      ...codeMethods.map((m) =>
        el("option", m === "totp" ? "Code from the authenticator app" : m === "recovery_code" ? "Recovery code" : m, {
          value: m,
        }),
      ),
    );
    // A passkey answers with its own button; the code fields only when a code can.
    for (const id of [
      "challenge-method-label",
      "challenge-method",
      "challenge-code-label",
      "challenge-code",
      "challenge-verify",
    ]) {
      show(id, codeMethods.length > 0);
    }
    byId<HTMLInputElement>("challenge-code").required = codeMethods.length > 0;
    show("challenge-passkey", res.requiredMfaMethods.includes("webauthn"));
    const why = byId("challenge-why");
    why.replaceChildren(
      "This sign-in looks ",
      el("strong", `${res.riskLevel ?? "risky"} risk`),
      " (",
      code(res.mfaCheckReason ?? "policy"),
      res.requiredMfaMethods.includes("webauthn")
        ? "). Use a passkey, or enter a code from your authenticator app or a recovery code."
        : "). Enter a code from your authenticator app, or a recovery code.",
    );
    show("signin", false);
    show("challenge", true);
    if (codeMethods.length > 0) byId("challenge-code").focus();
    return;
  }
  challenge = null;
  show("challenge", false);
  show("signin", false);
  show("account", true);
  startSession(res);
  if (rpc !== "RefreshToken") {
    resetRotations();
    void loadAccount();
  }
}

function startSession(res: LoginResponse): void {
  signedIn = {
    accessToken: res.accessToken ?? "",
    refreshToken: res.refreshToken ?? "",
    expiresAt: Date.now() + res.expiresIn * 1000,
  };
  tick();
  scheduleRefresh(res.expiresIn);
}

/** Back to the sign-in form; the result stays on screen for reference. */
function endSession(): void {
  signedIn = null;
  challenge = null;
  window.clearTimeout(refreshTimer);
  show("account", false);
  show("challenge", false);
  show("result", false);
  show("signin", true);
  byId<HTMLFormElement>("challenge-form").reset();
}

function scheduleRefresh(expiresIn: number): void {
  window.clearTimeout(refreshTimer);
  const ahead = Math.min(REFRESH_AHEAD_SECONDS, expiresIn / 2);
  refreshTimer = window.setTimeout(
    () => {
      if (signedIn !== null && byId<HTMLInputElement>("refresh-auto").checked) {
        clearFeedback();
        refresh("automatic").catch((e: unknown) => showProblem(describeProblem(e)));
      }
    },
    (expiresIn - ahead) * 1000,
  );
}

/**
 * One refresh at a time: sending the same refresh token twice (a click during the automatic
 * refresh) would look like a stolen token being replayed, and the service would end the session.
 */
let refreshing: Promise<void> | null = null;

function refresh(kind: "manual" | "automatic"): Promise<void> {
  refreshing ??= rotate(kind).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

async function rotate(kind: "manual" | "automatic"): Promise<void> {
  if (signedIn === null) return;
  const before = signedIn.refreshToken;
  let res: LoginResponse;
  try {
    res = await api.auth.refreshToken({ refreshToken: before });
  } catch (e) {
    const p = describeProblem(e);
    // The session is over (revoked elsewhere, expired): say so and sign in again.
    if (p.status === "Unauthenticated") endSession();
    throw e;
  }
  handleLogin(res, "RefreshToken");
  rotations += 1;
  const li = el("li");
  li.append(
    timeEl(new Date(), "time"),
    ` ${kind}: refresh token `,
    code(abbreviate(before, 8)),
    " → ",
    code(abbreviate(res.refreshToken ?? "", 8)),
    `, new access token for ${clock(res.expiresIn)}`,
  );
  const list = byId("rotations");
  if (rotations === 1) list.replaceChildren();
  list.prepend(li);
}

function resetRotations(): void {
  rotations = 0;
  byId("rotations").replaceChildren(el("li", "None yet.", { class: "empty" }));
}

/** The countdown, once a second. */
function tick(): void {
  if (signedIn === null) return;
  const left = (signedIn.expiresAt - Date.now()) / 1000;
  const t = byId("token-countdown");
  t.textContent = left > 0 ? clock(left) : "expired";
  t.setAttribute("datetime", `PT${Math.max(0, Math.floor(left))}S`);
}
window.setInterval(tick, 1000);

// --- account: TOTP, sessions -----------------------------------------------------------------

async function loadAccount(): Promise<void> {
  try {
    await Promise.all([loadMfaStatus(), loadSessions(), loadPasskeys()]);
  } catch (e) {
    showProblem(describeProblem(e));
  }
}

/** Answers the open challenge with a passkey: the service's options, the browser's ceremony, VerifyMfa. */
async function answerWithPasskey(): Promise<void> {
  if (challenge === null) return;
  const begun = await api.auth.beginWebauthnMfa({ challengeToken: challenge.token, deviceId: deviceId() });
  const assertion = await startAuthentication({ optionsJSON: begun.options as never });
  const res = await api.auth.verifyMfa({
    challengeToken: challenge.token,
    method: "webauthn",
    webauthnAssertion: assertion as never,
    trustDevice: byId<HTMLInputElement>("challenge-trust").checked,
    deviceId: deviceId(),
  });
  handleLogin(res, "VerifyMfa");
}

/**
 * StepUp on this session (a code, or a passkey: BeginStepUp, the browser's ceremony, StepUp): the
 * new access token (same session, `amr` with the factor) replaces the old one.
 */
async function stepUp(method: "totp" | "webauthn", code = ""): Promise<void> {
  if (signedIn === null) return;
  let assertion: unknown;
  if (method === "webauthn") {
    const begun = await api.mfa.beginStepUp({});
    assertion = await startAuthentication({ optionsJSON: begun.options as never });
  }
  const r = await api.mfa.stepUp({
    method,
    code,
    ...(assertion === undefined ? {} : { webauthnAssertion: assertion as never }),
  });
  signedIn = { ...signedIn, accessToken: r.accessToken, expiresAt: Date.now() + r.expiresIn * 1000 };
  tick();
  notice(
    `Confirmed: you can change your second factors for the next ${Math.max(1, Math.round(r.maxAge / 60))} minutes. Try again now.`,
  );
}

async function loadPasskeys(): Promise<void> {
  const { passkeys } = await api.mfa.listPasskeys({});
  byId("passkeys-status").replaceChildren(
    passkeys.length > 0 ? el("span", "on", { class: "badge ok" }) : el("span", "off", { class: "badge" }),
    passkeys.length > 0 ? ` ${passkeys.length} passkey(s).` : " No passkey yet.",
  );
  byId("passkeys")
    .querySelector("tbody")!
    .replaceChildren(...passkeys.map(passkeyRow));
}

function passkeyRow(p: Passkey): HTMLTableRowElement {
  const row = el("tr", null, { "data-passkey-id": p.id });
  const name = el("td", p.name);
  const added = el("td");
  if (p.createdAt !== undefined) added.append(timeEl(timestampDate(p.createdAt), "short"));
  const used = el("td", p.lastUsedAt === undefined ? "never" : null);
  if (p.lastUsedAt !== undefined) used.append(timeEl(timestampDate(p.lastUsedAt), "short"));
  const kind = el(
    "td",
    `${p.authenticatorType === "multi_device" ? "synced" : "this device only"}${p.backedUp ? ", backed up" : ""}`,
  );
  if (p.flagged) kind.append(" ", el("span", "refused: counter went backwards", { class: "badge" }));
  const actions = el("td");
  const rename = el("button", "Rename", { type: "button", class: "secondary", "aria-label": `Rename ${p.name}` });
  rename.addEventListener("click", () =>
    action(rename, async () => {
      const next = window.prompt("New name for this passkey", p.name);
      if (next === null) return;
      await api.mfa.renamePasskey({ id: p.id, name: next });
      notice("The passkey is renamed.");
      await loadPasskeys();
    }),
  );
  const remove = el("button", "Remove", { type: "button", class: "danger", "aria-label": `Remove ${p.name}` });
  remove.addEventListener("click", () =>
    action(remove, async () => {
      await api.mfa.removePasskey({ id: p.id });
      notice("The passkey is removed.");
      await loadPasskeys();
    }),
  );
  actions.append(rename, " ", remove);
  row.append(name, added, used, kind, actions);
  return row;
}

/** Registers a passkey: the service's options, the browser's ceremony, the service's check. */
async function addPasskey(form: HTMLFormElement): Promise<void> {
  const name = field(form, "name");
  const begun = await api.mfa.beginPasskeyRegistration({});
  const credential = await startRegistration({ optionsJSON: begun.options as never });
  const r = await api.mfa.finishPasskeyRegistration({
    credential: credential as never,
    ...(name === "" ? {} : { name }),
  });
  form.reset();
  notice(`Passkey “${r.passkey?.name ?? name}” added.`);
  await loadPasskeys();
}

async function loadMfaStatus(): Promise<void> {
  const s = await api.mfa.getMfaStatus({});
  const status = byId("mfa-status");
  if (s.totpEnabled) {
    status.replaceChildren(
      el("span", "on", { class: "badge ok" }),
      ` TOTP is set up; ${s.recoveryCodesLeft} recovery code(s) left.`,
    );
  } else {
    status.replaceChildren(
      el("span", "off", { class: "badge" }),
      s.totpPending ? " Set-up started but not confirmed." : " No authenticator app yet.",
    );
  }
  show("totp-enroll", !s.totpEnabled);
}

async function enrollTotp(): Promise<void> {
  const e = await api.mfa.enrollTotp({});
  byId("totp-qr").replaceChildren(qrSvg(e.otpauthUri, "QR code of the otpauth URI for an authenticator app"));
  byId("totp-secret").textContent = e.secret;
  byId("totp-settings").textContent = `${e.algorithm}, ${e.digits} digits, every ${e.period} s`;
  byId("totp-uri").textContent = e.otpauthUri;
  show("totp-setup", true);
  show("totp-enroll", false);
  byId("totp-confirm-code").focus();
}

async function confirmTotp(form: HTMLFormElement): Promise<void> {
  const r = await api.mfa.confirmTotp({ code: field(form, "code") });
  form.reset();
  show("totp-setup", false);
  byId("recovery-codes").replaceChildren(
    ...r.recoveryCodes.map((c) => {
      const li = el("li");
      li.append(code(c));
      return li;
    }),
  );
  show("recovery", true);
  await loadMfaStatus();
}

const FAMILY_NAMES: Record<string, string> = {
  chrome: "Chrome",
  firefox: "Firefox",
  safari: "Safari",
  edge: "Edge",
  opera: "Opera",
  samsung: "Samsung Internet",
  windows: "Windows",
  macos: "macOS",
  linux: "Linux",
  android: "Android",
  ios: "iOS",
  chromeos: "ChromeOS",
};

/** The browser and OS family the service read from the session's User-Agent ("Firefox on Linux"). */
function describeBrowser(s: Session): string {
  const name = (family: string | undefined) => (family === undefined ? undefined : (FAMILY_NAMES[family] ?? family));
  const browser = name(s.browser) ?? s.userAgent?.split(/[ /]/)[0] ?? "—";
  const os = name(s.os);
  return os === undefined ? browser : `${browser} on ${os}`;
}

/** Whether this browser holds a device credential, and the button that forgets it. */
function showTrust(): void {
  const trusted = deviceCredential() !== null;
  byId("trust-status").textContent = trusted
    ? "This browser is trusted: signing in here skips the second factor (unless a sign-in looks high risk)."
    : "This browser is not trusted: signing in from a new context asks for a second factor.";
  show("trust-forget", trusted);
}

/** "Forget this device": the service stops trusting this browser's credential, and it is dropped here. */
async function forgetTrust(): Promise<void> {
  const credential = deviceCredential();
  if (credential === null) return;
  const r = await api.user.forgetDevice({ deviceCredential: credential });
  dropDeviceCredential();
  showTrust();
  notice(
    r.forgottenDevices > 0
      ? "This device is forgotten: the next sign-in here asks for a second factor."
      : "This device was no longer trusted.",
  );
}

async function loadSessions(): Promise<void> {
  const { sessions } = await api.user.listSessions({});
  byId("sessions")
    .querySelector("tbody")!
    .replaceChildren(...sessions.map(sessionRow));
}

function sessionRow(s: Session): HTMLTableRowElement {
  const tr = el("tr");
  const device = el("td");
  if (s.current) device.append(el("span", "this session", { class: "badge ok" }));
  else device.append(s.ip ?? "address unknown");
  if (s.current && s.ip !== undefined) device.append(el("br"), el("span", s.ip, { class: "hint" }));
  const signedInAt = el("td");
  signedInAt.append(timeEl(s.createdAt, "short"));
  const lastUsed = el("td");
  lastUsed.append(timeEl(s.lastUsedAt, "short"));
  const act = el("td");
  if (!s.current) {
    const revoke = el("button", "Revoke", {
      type: "button",
      class: "secondary",
      "aria-label": `Revoke the session signed in ${new Date(s.createdAt).toLocaleString()}`,
    });
    revoke.addEventListener("click", () =>
      action(revoke, async () => {
        await api.user.revokeSession({ sessionId: s.id });
        notice("The other session is ended: its refresh token no longer works.");
        await loadSessions();
      }),
    );
    act.append(revoke);
  }
  tr.append(device, el("td", describeBrowser(s)), signedInAt, lastUsed, act);
  tr.dataset["sessionId"] = s.id;
  return tr;
}

async function signOut(all: boolean): Promise<void> {
  if (signedIn === null) return;
  const r = await api.auth.signOut({ allSessions: all, refreshToken: signedIn.refreshToken });
  endSession();
  notice(`Signed out: ${r.revokedSessions} session(s) ended${all ? " on every device" : ""}.`);
}

// --- wiring ----------------------------------------------------------------------------------

function init(): void {
  byId("device-id").textContent = abbreviate(deviceId(), 6);
  show("dev-panel", DEV_ISSUER);
  show("app-panel", !DEV_ISSUER);
  byId<HTMLDetailsElement>("token-details").open = !DEV_ISSUER;

  const radios = document.querySelectorAll<HTMLInputElement>("input[name=protocol]");
  for (const r of radios) {
    r.checked = r.value === api.protocol;
    r.addEventListener("change", () => {
      if (!r.checked) return;
      localStorage.setItem(PROTOCOL_KEY, r.value);
      api = connect(r.value as Protocol);
      notice(`Calls now use ${PROTOCOL_NAMES[api.protocol]}.`);
    });
  }

  onSubmit("dev-form", async (form) => {
    const sub = field(form, "sub");
    const amr = field(form, "amr")
      .split(",")
      .map((m) => m.trim())
      .filter((m) => m !== "");
    const idToken = await mintDevIdToken({
      sub,
      email: field(form, "email") || `${sub}@example.com`,
      ...(amr.length > 0 ? { amr } : {}),
    });
    await signin(idToken, "dev");
  });
  onSubmit("token-form", (form) => signin(field(form, "id_token"), field(form, "provider") || undefined));
  onSubmit("challenge-form", async (form) => {
    if (challenge === null) return;
    const res = await api.auth.verifyMfa({
      challengeToken: challenge.token,
      method: field(form, "method"),
      code: field(form, "code").replace(/\s+/g, ""),
      trustDevice: byId<HTMLInputElement>("challenge-trust").checked,
      deviceId: deviceId(),
    });
    form.reset();
    handleLogin(res, "VerifyMfa");
  });
  onClick("challenge-passkey", answerWithPasskey);
  onClick("step-up-passkey", () => stepUp("webauthn"));
  onSubmit("step-up-code-form", async (form) => {
    const code = field(form, "code").replace(/\s+/g, "");
    form.reset();
    await stepUp("totp", code);
  });
  onSubmit("passkey-add-form", addPasskey);
  byId("challenge-cancel").addEventListener("click", () => {
    clearFeedback();
    endSession();
  });
  onSubmit("totp-confirm-form", confirmTotp);
  onClick("totp-enroll", enrollTotp);
  onClick("recovery-done", async () => {
    byId("recovery-codes").replaceChildren();
    show("recovery", false);
  });
  onClick("refresh-now", () => refresh("manual"));
  onClick("sessions-reload", loadSessions);
  onClick("signout-this", () => signOut(false));
  onClick("signout-all", () => signOut(true));
  onClick("trust-forget", forgetTrust);
  showTrust();
  byId("device-forget").addEventListener("click", () => {
    byId("device-id").textContent = abbreviate(forgetDevice(), 6);
    notice("This browser now has a new device id: the service will see a device it does not know.");
  });
  byId("error-dismiss").addEventListener("click", () => show("error", false));
  // Whatever slips past `action`, a person still sees what went wrong, never a dead page.
  window.addEventListener("unhandledrejection", (event) => showProblem(describeProblem(event.reason)));
  window.addEventListener("error", (event) => showProblem(describeProblem(event.error ?? event.message)));
  byId("error").tabIndex = -1;
}

init();
