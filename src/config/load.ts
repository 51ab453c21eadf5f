import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { type Config, configSchema } from "./schema.ts";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Environment variables that override the file, and the key each sets. */
const ENV_OVERRIDES: Record<string, { path: string[]; type: "string" | "number" | "boolean" | "list" | "count" }> = {
  PORT: { path: ["server", "port"], type: "number" },
  HOST: { path: ["server", "host"], type: "string" },
  PUBLIC_URL: { path: ["server", "public_url"], type: "string" },
  DATABASE_URL: { path: ["database", "url"], type: "string" },
  MIGRATE_ON_START: { path: ["database", "migrate_on_start"], type: "boolean" },
  DATA_DIR: { path: ["data_dir"], type: "string" },
  LOG_LEVEL: { path: ["log_level"], type: "string" },
  TOKEN_ISSUER: { path: ["tokens", "issuer"], type: "string" },
  KEY_ENCRYPTION_KEY: { path: ["tokens", "key_encryption_key"], type: "string" },
  KEY_ENCRYPTION_KEY_FILE: { path: ["tokens", "key_encryption_key_file"], type: "string" },
  METRICS_PORT: { path: ["server", "metrics_port"], type: "number" },
  /** A number of processes, or `auto` (one per available core). */
  WORKERS: { path: ["server", "workers"], type: "count" },
  WORKER_BALANCING: { path: ["server", "worker_balancing"], type: "string" },
  TRACING_ENABLED: { path: ["tracing", "enabled"], type: "boolean" },
  OTEL_EXPORTER_OTLP_ENDPOINT: { path: ["tracing", "otlp_endpoint"], type: "string" },
  OTEL_SERVICE_NAME: { path: ["tracing", "service_name"], type: "string" },
  /** Comma-separated, e.g. `https://app.example,https://admin.example`. */
  CORS_ALLOWED_ORIGINS: { path: ["server", "cors", "allowed_origins"], type: "list" },
  ADMIN_API_KEYS_FILE: { path: ["admin", "api_keys_file"], type: "string" },
};

/**
 * Parses configuration once: the YAML/JSON file (if any), then environment overrides, through
 * the schema into a frozen, typed Config. Any problem throws a ConfigError naming the key.
 */
export function loadConfig(options: {
  file?: string | undefined;
  env: Record<string, string | undefined>;
  overrides?: Record<string, unknown>;
}): Config {
  let raw: Record<string, unknown> = {};
  if (options.file !== undefined) {
    let text: string;
    try {
      text = readFileSync(options.file, "utf8");
    } catch (e) {
      throw new ConfigError(`cannot read config file ${options.file}: ${(e as Error).message}`);
    }
    try {
      const parsed: unknown = parseYaml(text);
      raw = parsed === null || parsed === undefined ? {} : (parsed as Record<string, unknown>);
    } catch (e) {
      throw new ConfigError(`config file ${options.file} is not valid YAML: ${(e as Error).message}`);
    }
    if (typeof raw !== "object" || Array.isArray(raw)) {
      throw new ConfigError(`config file ${options.file} must hold a mapping at the top level`);
    }
  }
  for (const [name, { path, type }] of Object.entries(ENV_OVERRIDES)) {
    const value = options.env[name];
    if (value === undefined || value === "") continue;
    let typed: unknown = value;
    if (type === "number") {
      typed = Number(value);
      if (!/^\d+$/.test(value) || !Number.isSafeInteger(typed))
        throw new ConfigError(`environment ${name}: "${value}" is not an integer`);
    } else if (type === "count") {
      if (value !== "auto" && !/^\d+$/.test(value))
        throw new ConfigError(`environment ${name}: "${value}" is neither a number nor auto`);
      typed = value === "auto" ? value : Number(value);
    } else if (type === "list") {
      typed = value
        .split(",")
        .map((v) => v.trim())
        .filter((v) => v !== "");
    } else if (type === "boolean") {
      if (!/^(true|false|1|0)$/.test(value)) throw new ConfigError(`environment ${name}: use true or false`);
      typed = value === "true" || value === "1";
    }
    setPath(raw, path, typed);
  }
  for (const [key, value] of Object.entries(options.overrides ?? {})) setPath(raw, key.split("."), value);
  addAdminKeysFromFile(raw);

  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join(".") || "(top level)"}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join("\n")}`);
  }
  const config = result.data;
  if (config.tokens.key_encryption_key !== undefined) {
    const kek = Buffer.from(config.tokens.key_encryption_key, "base64");
    if (kek.length !== 32) throw new ConfigError("tokens.key_encryption_key: must be base64 of exactly 32 bytes");
  }
  return deepFreeze(config);
}

/**
 * `admin.api_keys_file`: more admin keys, from a file a secret store mounts (YAML or JSON: a list
 * of `{name, sha256}`, or what `admin keys new` prints), added to `admin.api_keys`.
 */
function addAdminKeysFromFile(raw: Record<string, unknown>): void {
  const admin = raw["admin"] as Record<string, unknown> | undefined;
  const file = admin?.["api_keys_file"];
  if (typeof file !== "string") return;
  let parsed: unknown;
  try {
    parsed = parseYaml(readFileSync(file, "utf8"));
  } catch (e) {
    throw new ConfigError(`admin.api_keys_file: cannot read ${file}: ${(e as Error).message}`);
  }
  const mapping = (v: unknown) =>
    typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  const keys = Array.isArray(parsed)
    ? parsed
    : (mapping(mapping(parsed)?.["admin"])?.["api_keys"] ?? mapping(parsed)?.["api_keys"]);
  if (!Array.isArray(keys)) {
    throw new ConfigError(
      `admin.api_keys_file: ${file} must hold a list of {name, sha256} (or admin.api_keys as \`admin keys new\` prints it)`,
    );
  }
  const listed: unknown[] = keys; // Array.isArray left it `any[]`
  admin!["api_keys"] = [...(Array.isArray(admin!["api_keys"]) ? (admin!["api_keys"] as unknown[]) : []), ...listed];
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== "object" || next === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
