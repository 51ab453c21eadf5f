/**
 * The service's production-like bench configuration, shared by the served process
 * (bench/run.ts writes it as YAML for `node src/main.ts --config FILE`) and the in-process
 * statement-counting phase (bench/count-statements.ts loads the same file), so both measure the
 * same setup. Defaults everywhere else: adaptive MFA at `medium`, the failed-sign-in limit
 * (30 per address per 5 minutes), no dev mode.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { BENCH_CLIENT_ID } from "./issuer.ts";

/** The provider name callers send as `provider`. */
export const BENCH_PROVIDER = "bench";
/** The same issuer, accepting a token more than once: for h2load's fixed request body only. */
export const REUSABLE_PROVIDER = "bench-reusable";
/** The same issuer's ES256 key, for the soak's tokens minted on the fly (bench/issuer.ts). */
export const SOAK_PROVIDER = "bench-soak";

export function serviceConfig(options: {
  issuer: string;
  dataDir: string;
  databaseUrl?: string | undefined;
}): Record<string, unknown> {
  const provider = {
    issuer: options.issuer,
    client_ids: [BENCH_CLIENT_ID],
    jwks_uri: `${options.issuer}/jwks`,
    algorithms: ["RS256"], // the default, spelled out
    clock_skew_seconds: 60, // the default, spelled out
  };
  return {
    dev: false,
    data_dir: options.dataDir,
    log_level: "info", // the default: one access-log line per request is part of the cost
    server: { host: "127.0.0.1" },
    ...(options.databaseUrl === undefined ? {} : { database: { url: options.databaseUrl } }),
    tokens: { key_encryption_key: randomBytes(32).toString("base64") },
    providers: {
      [BENCH_PROVIDER]: provider,
      [REUSABLE_PROVIDER]: { ...provider, allow_token_reuse: true },
      [SOAK_PROVIDER]: { ...provider, algorithms: ["ES256"] },
    },
  };
}

/** Writes the config as YAML into `dir` and returns the file's path. */
export function writeServiceConfig(dir: string, config: Record<string, unknown>): string {
  const file = join(dir, "config.yaml");
  writeFileSync(file, stringify(config));
  return file;
}
