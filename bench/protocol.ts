/** What bench/run.ts and its load driver (bench/load.ts) say to each other. */

/** Connections (HTTP) or calls in flight (gRPC, Connect) of every load phase. */
export const CONNECTIONS = 32;

/** The request bodies each kind of server takes for an ID-token sign-in. */
export type SigninStyle = "rest" | "better-auth";

export type Command =
  | { type: "tokens"; file: string }
  | { type: "reset" }
  /** Mint returning users' tokens on the fly (ES256, bench/issuer.ts), for `set: "minted"`. */
  | {
      type: "minter";
      spec: { issuer: string; kid: string; privateKeyPem: string };
      subjects: { prefix: string; count: number };
    }
  | {
      type: "http-signin";
      url: string;
      path: string;
      style: SigninStyle;
      /**
       * `returning-once`: every returning user once, in order (creates them; collects tokens).
       * `minted`: returning users round robin, each request a token minted for it on the fly
       * (provider bench-soak): no token list, for phases of any length (the soak).
       */
      set: "returning" | "returning-once" | "new" | "minted";
      seconds: number;
      maxRequests: number;
      /** Keep the refresh and access tokens of the answers, for the refresh and /me phases. */
      collect?: boolean;
    }
  | { type: "http-refresh"; url: string; seconds: number; maxRequests: number }
  | { type: "http-me"; url: string; seconds: number; maxRequests: number }
  | { type: "rpc-signin"; url: string; protocol: "grpc" | "connect"; seconds: number; maxRequests: number };

export interface PhaseResult {
  /** Answers (any status) plus transport errors. */
  requests: number;
  /** 2xx answers with tokens (a 200 that asks for MFA is not ok). */
  ok: number;
  /** Non-2xx answers (HTTP), or calls that ended with an error code (gRPC/Connect). */
  non2xx: number;
  /** Connection errors and timeouts. */
  errors: number;
  /** 2xx answers that asked for MFA instead of giving tokens (must be 0). */
  mfa_challenges: number;
  elapsed_s: number;
  rate: number;
  p50_ms: number | null;
  p99_ms: number | null;
  status_counts: Record<string, number>;
  first_failure?: string;
}
