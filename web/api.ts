/**
 * The page's calls to the service: one Connect-Web client per service over the chosen protocol
 * (Connect JSON by default, or gRPC-Web), the browser's device id, and errors described as the
 * service's stable code with its message.
 */
import { type Client, Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { ErrorInfoSchema } from "../gen/pb/google/rpc/error_details_pb.ts";
import { AuthService } from "../gen/pb/identity/v1/auth_service_pb.ts";
import { MfaService } from "../gen/pb/identity/v1/mfa_service_pb.ts";
import { UserService } from "../gen/pb/identity/v1/user_service_pb.ts";

export type Protocol = "connect" | "grpc-web";

export const PROTOCOL_NAMES: Record<Protocol, string> = { connect: "Connect", "grpc-web": "gRPC-Web" };

export interface Api {
  auth: Client<typeof AuthService>;
  mfa: Client<typeof MfaService>;
  user: Client<typeof UserService>;
  protocol: Protocol;
}

/** A call that went wrong, as the page shows it. */
export interface Problem {
  /** The service's stable code (`mfa_code_invalid`, …), or the page's own for a failed fetch. */
  code: string;
  /** The gRPC status name (`Unauthenticated`), when the service answered. */
  status: string | null;
  message: string;
  /**
   * For `reauthentication_required` from a user with a factor: the StepUp methods that user can
   * confirm with (`totp`, `recovery_code`, `webauthn`), so the page can offer them.
   */
  stepUpMethods?: string[];
}

/** Called after each RPC with its name, protocol and duration. */
export type CallObserver = (call: { rpc: string; protocol: Protocol; ms: number; ok: boolean }) => void;

/**
 * Clients for every service over `protocol`, on the page's own origin. `accessToken()` is read at
 * each call, so a refreshed token is used from the next call on.
 */
export function createApi(protocol: Protocol, accessToken: () => string | null, observe: CallObserver): Api {
  const bearer: Interceptor = (next) => async (req) => {
    const token = accessToken();
    if (token !== null && !req.header.has("authorization")) req.header.set("authorization", `Bearer ${token}`);
    const started = performance.now();
    try {
      const res = await next(req);
      observe({ rpc: req.method.name, protocol, ms: performance.now() - started, ok: true });
      return res;
    } catch (e) {
      observe({ rpc: req.method.name, protocol, ms: performance.now() - started, ok: false });
      throw e;
    }
  };
  const options = { baseUrl: location.origin, interceptors: [bearer] };
  const transport: Transport =
    protocol === "grpc-web" ? createGrpcWebTransport(options) : createConnectTransport(options);
  return {
    auth: createClient(AuthService, transport),
    mfa: createClient(MfaService, transport),
    user: createClient(UserService, transport),
    protocol,
  };
}

/** An ID token from the built-in dev issuer (dev mode only). */
export async function mintDevIdToken(claims: { sub: string; email: string; amr?: string[] }): Promise<string> {
  let res: Response;
  try {
    res = await fetch("/dev/oidc/token", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...claims, email_verified: true }),
    });
  } catch (e) {
    throw new PageError({
      code: "network_error",
      status: null,
      message: `the dev issuer could not be reached: ${String(e)}`,
    });
  }
  const body = (await res.json().catch(() => ({}))) as { id_token?: string; code?: string; message?: string };
  if (!res.ok || typeof body.id_token !== "string") {
    throw new PageError({
      code: body.code ?? `http_${res.status}`,
      status: null,
      message: body.message ?? "the dev issuer refused",
    });
  }
  return body.id_token;
}

/** An error the page raises itself, already described. */
export class PageError extends Error {
  readonly problem: Problem;
  constructor(problem: Problem) {
    super(problem.message);
    this.problem = problem;
  }
}

/**
 * What to do when the service wants a fresher authentication before changing second factors
 * (ErrorInfo metadata `step_up`, `max_age_seconds`): said in words, with the service's own text.
 */
function stepUpAdvice(metadata: Record<string, string>, serviceMessage: string): string {
  const minutes = Math.max(1, Math.round(Number(metadata["max_age_seconds"] ?? "600") / 60));
  const what =
    metadata["step_up"] === "AuthService.SigninWithIdToken"
      ? `For your safety, setting up a second factor needs a recent sign-in. Sign out, sign in again, then set it up within ${minutes} minutes.`
      : `For your safety, changing your second factors needs confirming one of them first (within the last ${minutes} minutes).`;
  return `${what} (${serviceMessage})`;
}

/** Any failure as code + status + message: the ErrorInfo reason the service attached, when it did. */
export function describeProblem(e: unknown): Problem {
  if (e instanceof PageError) return e.problem;
  if (e instanceof ConnectError) {
    const info = e.findDetails(ErrorInfoSchema)[0];
    const reason = info?.reason;
    const status = Code[e.code];
    if (reason === "reauthentication_required") {
      const methods = (info!.metadata["step_up_methods"] ?? "").split(",").filter((m) => m !== "");
      return { code: reason, status, message: stepUpAdvice(info!.metadata, e.rawMessage), stepUpMethods: methods };
    }
    // Without a reason the browser never got the service's answer (network, CORS, a proxy).
    return {
      code: reason ?? (e.code === Code.Unknown || e.code === Code.Unavailable ? "network_error" : snake(status)),
      status,
      message: e.rawMessage,
    };
  }
  return { code: "page_error", status: null, message: e instanceof Error ? e.message : String(e) };
}

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c, i: number) => (i === 0 ? "" : "_") + c.toLowerCase());
}

const DEVICE_KEY = "idtoken-signin.device_id";
const CREDENTIAL_KEY = "idtoken-signin.device_credential";

/**
 * This browser's device credential (`tdc_...`), when an MFA with "trust this device" issued one:
 * presented at sign-in, it skips the second factor for the user it was issued to. A secret, like
 * a password: kept in localStorage and sent only in the sign-in request.
 */
export function deviceCredential(): string | null {
  const known = localStorage.getItem(CREDENTIAL_KEY);
  return known !== null && /^tdc_[A-Za-z0-9_-]{43}$/.test(known) ? known : null;
}

export function storeDeviceCredential(credential: string): void {
  localStorage.setItem(CREDENTIAL_KEY, credential);
}

export function dropDeviceCredential(): void {
  localStorage.removeItem(CREDENTIAL_KEY);
}

/**
 * This browser's device id: 256 random bits kept in localStorage, sent with every sign-in so the
 * service recognises this browser as seen before (a risk signal only: it never skips MFA).
 */
export function deviceId(): string {
  const known = localStorage.getItem(DEVICE_KEY);
  if (known !== null && /^[A-Za-z0-9_-]{43}$/.test(known)) return known;
  return forgetDevice();
}

/** A new device id: from now on this browser is a device the service has never seen. */
export function forgetDevice(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const id = btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
  localStorage.setItem(DEVICE_KEY, id);
  return id;
}
