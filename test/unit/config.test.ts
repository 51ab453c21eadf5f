import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config/load.ts";
import { configSchema } from "../../src/config/schema.ts";
import { dataDir, databaseUrl, productionRefusals } from "../../src/config/to-deps.ts";

const dir = mkdtempSync(join(tmpdir(), "identity-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function configFile(text: string): string {
  const file = join(dir, `config-${++files}.yaml`);
  writeFileSync(file, text);
  return file;
}

/** The ConfigError loadConfig throws for these options (fails the test if it does not throw). */
function configError(options: Parameters<typeof loadConfig>[0]): ConfigError {
  try {
    loadConfig(options);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error("expected loadConfig to throw a ConfigError");
}

const GOOGLE = `
providers:
  google:
    issuer: https://accounts.google.com
    client_ids: [web.apps.googleusercontent.com, ios.apps.googleusercontent.com]
    algorithms: [RS256]
    claim_allowlist:
      hd: [example.com]
`;

describe("loadConfig", () => {
  it("fills in defaults when there is no file and no environment", () => {
    const config = loadConfig({ env: {} });
    expect(config.server.port).toBe(8080);
    expect(config.server.host).toBe("127.0.0.1");
    expect(config.tokens.access_token_ttl_seconds).toBe(1800);
    expect(config.database.migrate_on_start).toBe(true);
    expect(config.database.url).toBeUndefined();
    expect(config.id_token.max_bytes).toBe(16 * 1024);
    expect(config.providers).toEqual({});
    expect(config.dev).toBe(false);
  });

  it("reads a YAML file, with provider defaults filled in", () => {
    const file = configFile(`
server:
  port: 9000
  public_url: https://id.example.com
tokens:
  access_token_ttl_seconds: 900
${GOOGLE}`);
    const config = loadConfig({ file, env: {} });
    expect(config.server.port).toBe(9000);
    expect(config.server.public_url).toBe("https://id.example.com");
    expect(config.tokens.access_token_ttl_seconds).toBe(900);
    expect(config.providers["google"]).toMatchObject({
      issuer: "https://accounts.google.com",
      client_ids: ["web.apps.googleusercontent.com", "ios.apps.googleusercontent.com"],
      algorithms: ["RS256"],
      claim_allowlist: { hd: ["example.com"] },
      trusted_audiences: [],
      clock_skew_seconds: 60,
      require_nonce: false,
      signup: "allow",
      link_by_email: "never",
    });
  });

  it("treats an empty file as all defaults", () => {
    expect(loadConfig({ file: configFile(""), env: {} }).server.port).toBe(8080);
  });

  it("lets the environment override the file", () => {
    const file = configFile(`
server:
  port: 9000
database:
  url: file:./from-file.db
  migrate_on_start: true
`);
    const config = loadConfig({
      file,
      env: { PORT: "9191", DATABASE_URL: "postgresql://db.internal/identity", MIGRATE_ON_START: "false" },
    });
    expect(config.server.port).toBe(9191);
    expect(config.database.url).toBe("postgresql://db.internal/identity");
    expect(config.database.migrate_on_start).toBe(false);
  });

  it("ignores empty environment variables", () => {
    const file = configFile("server:\n  port: 9000\n");
    expect(loadConfig({ file, env: { PORT: "", DATABASE_URL: "" } }).server.port).toBe(9000);
  });

  it("names the bad key: a provider without client_ids", () => {
    const file = configFile(`
providers:
  google:
    issuer: https://accounts.google.com
`);
    expect(configError({ file, env: {} }).message).toContain("providers.google.client_ids");
  });

  it("names the bad key: an empty client_ids list", () => {
    const file = configFile(`
providers:
  google:
    issuer: https://accounts.google.com
    client_ids: []
`);
    expect(configError({ file, env: {} }).message).toContain("providers.google.client_ids");
  });

  it("refuses unknown keys (a typo must not be silently ignored)", () => {
    const file = configFile("server:\n  port: 9000\n  prot: 9001\n");
    const message = configError({ file, env: {} }).message;
    expect(message).toMatch(/^\s*server: /m);
    expect(message).toContain("prot");
  });

  it("refuses a server.trusted_proxies entry that is no address or CIDR, naming the key and the entry", () => {
    for (const bad of [
      "proxy.internal",
      "10.0.0.0/33",
      "2001:db8::/129",
      "10.0.0.0/8/1",
      "10.0.0.0/",
      "10.0.0.0/-1",
      "*",
    ]) {
      const file = configFile(`server:\n  trusted_proxies: ["10.0.0.0/8", ${JSON.stringify(bad)}]\n`);
      const message = configError({ file, env: {} }).message;
      expect(message, bad).toContain("server.trusted_proxies.1");
      expect(message, bad).toContain("must be an IP address or a CIDR block");
    }
    const file = configFile(`server:\n  trusted_proxies: ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"]\n`);
    expect(loadConfig({ file, env: {} }).server.trusted_proxies).toEqual([
      "10.0.0.0/8",
      "192.0.2.7",
      "2001:db8::/32",
      "::1",
    ]);
  });

  it("refuses a per-address connection share above max_connections", () => {
    const file = configFile("server:\n  max_connections: 100\n  max_connections_per_address: 101\n");
    expect(configError({ file, env: {} }).message).toContain("server.max_connections_per_address");
  });

  it("refuses unknown keys in a provider", () => {
    const file = configFile(`${GOOGLE}    audience: web\n`);
    const message = configError({ file, env: {} }).message;
    expect(message).toMatch(/^\s*providers\.google: /m);
    expect(message).toContain("audience");
  });

  it("names the environment variable that is not a number", () => {
    expect(configError({ env: { PORT: "abc" } }).message).toContain("PORT");
    expect(configError({ env: { PORT: "80.5" } }).message).toContain("PORT");
    // Regression: Number() read hex and exponent forms, so PORT=0x10 became 16.
    expect(configError({ env: { PORT: "0x10" } }).message).toContain("PORT");
    expect(configError({ env: { PORT: "1e3" } }).message).toContain("PORT");
  });

  it("names the environment variable that is not a boolean", () => {
    expect(configError({ env: { MIGRATE_ON_START: "yes" } }).message).toContain("MIGRATE_ON_START");
  });

  it("checks environment values against the schema too", () => {
    expect(configError({ env: { PORT: "70000" } }).message).toContain("server.port");
  });

  it("requires the key encryption key to be base64 of exactly 32 bytes", () => {
    const short = Buffer.alloc(31, 1).toString("base64");
    expect(configError({ env: { KEY_ENCRYPTION_KEY: short } }).message).toContain("tokens.key_encryption_key");
    const long = Buffer.alloc(33, 1).toString("base64");
    expect(configError({ env: { KEY_ENCRYPTION_KEY: long } }).message).toContain("tokens.key_encryption_key");
    const right = Buffer.alloc(32, 1).toString("base64");
    expect(loadConfig({ env: { KEY_ENCRYPTION_KEY: right } }).tokens.key_encryption_key).toBe(right);
  });

  it.each(["none", "HS256", "RS1"])("refuses provider algorithm %s by schema", (alg) => {
    const file = configFile(`
providers:
  google:
    issuer: https://accounts.google.com
    client_ids: [web]
    algorithms: [RS256, ${alg}]
`);
    expect(configError({ file, env: {} }).message).toContain("providers.google.algorithms.1");
  });

  it("refuses provider names that are not lower-case identifiers", () => {
    const file = configFile(`
providers:
  Google:
    issuer: https://accounts.google.com
    client_ids: [web]
`);
    expect(configError({ file, env: {} }).message).toContain("providers.Google");
  });

  it("reports an unreadable file, invalid YAML and a non-mapping top level", () => {
    expect(configError({ file: join(dir, "missing.yaml"), env: {} }).message).toContain("missing.yaml");
    expect(configError({ file: configFile("server: [unclosed\n"), env: {} }).message).toContain("not valid YAML");
    expect(configError({ file: configFile("- a\n- b\n"), env: {} }).message).toContain("mapping");
    expect(configError({ file: configFile("just text\n"), env: {} }).message).toContain("mapping");
  });

  it("takes CORS origins from CORS_ALLOWED_ORIGINS (comma-separated, blanks dropped)", () => {
    const config = loadConfig({ env: { CORS_ALLOWED_ORIGINS: " https://app.example , https://admin.example,," } });
    expect(config.server.cors.allowed_origins).toEqual(["https://app.example", "https://admin.example"]);
  });

  it("adds admin keys from admin.api_keys_file / ADMIN_API_KEYS_FILE: a list, or what `admin keys new` prints", () => {
    const hexA = "a".repeat(64);
    const hexB = "b".repeat(64);
    const list = configFile(`- { name: ops, sha256: ${hexA} }\n`);
    const printed = configFile(`admin:\n  api_keys:\n    - { name: "oncall", sha256: ${hexB} }\n`);
    expect(loadConfig({ env: { ADMIN_API_KEYS_FILE: list } }).admin.api_keys).toEqual([{ name: "ops", sha256: hexA }]);
    // Added to the keys of the config file.
    const withFile = loadConfig({
      file: configFile(`admin:\n  api_keys: [{ name: ops, sha256: ${hexA} }]\n  api_keys_file: ${printed}\n`),
      env: {},
    });
    expect(withFile.admin.api_keys.map((k) => k.name)).toEqual(["ops", "oncall"]);
    // Checked like configured keys (a key twice), and a missing or malformed file is named.
    expect(
      configError({
        file: configFile(`admin:\n  api_keys: [{ name: x, sha256: ${hexA} }]\n`),
        env: { ADMIN_API_KEYS_FILE: list },
      }).message,
    ).toContain("configured twice");
    expect(configError({ env: { ADMIN_API_KEYS_FILE: join(dir, "missing.yaml") } }).message).toContain(
      "admin.api_keys_file: cannot read",
    );
    expect(configError({ env: { ADMIN_API_KEYS_FILE: configFile("just text\n") } }).message).toContain(
      "must hold a list of {name, sha256}",
    );
  });

  it("takes server.workers from WORKERS: a number or auto; anything else is refused by name", () => {
    expect(loadConfig({ env: {} }).server.workers).toBe(1);
    expect(loadConfig({ env: { WORKERS: "3" } }).server.workers).toBe(3);
    expect(loadConfig({ env: { WORKERS: "auto" } }).server.workers).toBe("auto");
    expect(configError({ env: { WORKERS: "two" } }).message).toMatch(/WORKERS: "two" is neither a number nor auto/);
    expect(configError({ env: { WORKERS: "0" } }).message).toMatch(/server\.workers/);
  });

  it("refuses kernel balancing of several workers on port 0 (each worker would get a port of its own)", () => {
    expect(configError({ env: { WORKERS: "2", WORKER_BALANCING: "kernel", PORT: "0" } }).message).toMatch(
      /server\.worker_balancing: kernel balancing needs a fixed server\.port/,
    );
    expect(
      loadConfig({ env: { WORKERS: "2", WORKER_BALANCING: "kernel", PORT: "8081" } }).server.worker_balancing,
    ).toBe("kernel");
    expect(loadConfig({ env: { WORKERS: "1", WORKER_BALANCING: "kernel", PORT: "0" } }).server.port).toBe(0);
  });

  it("applies dotted overrides last", () => {
    const config = loadConfig({
      env: { PORT: "9191" },
      overrides: { "server.port": 0, "tokens.issuer": "https://id.test" },
    });
    expect(config.server.port).toBe(0);
    expect(config.tokens.issuer).toBe("https://id.test");
  });

  it("returns a deeply frozen config", () => {
    const config = loadConfig({ file: configFile(GOOGLE), env: {} });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.server)).toBe(true);
    expect(Object.isFrozen(config.providers["google"])).toBe(true);
    expect(Object.isFrozen(config.providers["google"]!.client_ids)).toBe(true);
    expect(() => {
      (config.server as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => {
      (config.providers["google"]!.client_ids as string[]).push("evil");
    }).toThrow(TypeError);
    expect(config.server.port).toBe(8080);
  });

  it("data_dir: ./data unless set; production needs it set, or database.url with a key-encryption key, and a provider", () => {
    const dev = loadConfig({ env: {}, overrides: { dev: true } });
    expect(dataDir(dev)).toBe(resolve("data"));
    expect(databaseUrl(dev)).toBe(`file:${resolve("data", "identity.db")}`);
    expect(productionRefusals(dev).map((r) => r.split(":")[0])).toEqual(["providers", "data_dir"]);
    const providers = { google: { issuer: "https://accounts.google.com", client_ids: ["web"] } };
    const kek = Buffer.alloc(32, 7).toString("base64");
    const ok = [
      { env: { DATA_DIR: "/srv/identity" } },
      { env: { DATABASE_URL: "postgresql://db.internal/identity", KEY_ENCRYPTION_KEY: kek } },
      { env: { DATABASE_URL: "postgresql://db.internal/identity", KEY_ENCRYPTION_KEY_FILE: "/run/secrets/kek" } },
    ];
    for (const { env } of ok) expect(productionRefusals(loadConfig({ env, overrides: { providers } }))).toEqual([]);
    const noKek = loadConfig({ env: { DATABASE_URL: "postgresql://db.internal/identity" }, overrides: { providers } });
    expect(productionRefusals(noKek).map((r) => r.split(":")[0])).toEqual(["data_dir"]);
    expect(dataDir(loadConfig({ env: { DATA_DIR: "/srv/identity" } }))).toBe("/srv/identity");
  });

  it("parses config.example.yaml at the repository root", () => {
    const example = fileURLToPath(new URL("../../config.example.yaml", import.meta.url));
    expect(existsSync(example), `${example} should exist`).toBe(true);
    expect(() => loadConfig({ file: example, env: {} })).not.toThrow();
  });

  it("refuses a multi-tenant issuer without a tenant allowlist or jwks_uri (fail closed)", () => {
    const entra = { issuer: "https://login.microsoftonline.com/{tenantid}/v2.0", client_ids: ["app"] };
    const missing = configError({ env: {}, overrides: { providers: { entra } } }).message;
    expect(missing).toContain("providers.entra.claim_allowlist.tid");
    expect(missing).toContain("providers.entra.jwks_uri");
    const ok = loadConfig({
      env: {},
      overrides: {
        providers: {
          entra: {
            ...entra,
            jwks_uri: "https://login.microsoftonline.com/common/discovery/v2.0/keys",
            claim_allowlist: { tid: ["11111111-2222-3333-4444-555555555555"] },
          },
        },
      },
    });
    expect(ok.providers["entra"]!.issuer).toContain("{tenantid}");
  });

  it("config.example.yaml documents every option of the schema", () => {
    const text = readFileSync(fileURLToPath(new URL("../../config.example.yaml", import.meta.url)), "utf8");
    const paths = optionPaths(configSchema);
    // The walker must see the schema's depth (server.cors.*, providers.*.*), or this proves nothing.
    expect(paths).toEqual(
      expect.arrayContaining([
        "server.cors.allowed_origins",
        "providers.*.claim_allowlist",
        "tokens.session_idle_ttl_seconds",
      ]),
    );
    const missing = paths.filter((path) => {
      const key = path.split(".").at(-1)!;
      return !new RegExp(`^\\s*#?\\s*${key}:`, "m").test(text);
    });
    expect(missing).toEqual([]);
  });
});

/** Dotted paths of every option in a zod object schema (records contribute their value's keys). */
function optionPaths(schema: unknown, prefix = ""): string[] {
  let s = schema as {
    def?: { type?: string; innerType?: unknown; valueType?: unknown; shape?: Record<string, unknown>; in?: unknown };
  };
  // Unwrap defaults, optionals and pipes to the object or record inside.
  for (let i = 0; i < 10 && s.def !== undefined && s.def.shape === undefined && s.def.type !== "record"; i++) {
    const inner = s.def.innerType ?? s.def.in;
    if (inner === undefined) break;
    s = inner as typeof s;
  }
  if (s.def?.type === "record") return optionPaths(s.def.valueType, prefix === "" ? "*" : `${prefix}.*`);
  const shape = s.def?.shape;
  if (shape === undefined) return [];
  return Object.entries(shape).flatMap(([key, value]) => {
    const path = prefix === "" ? key : `${prefix}.${key}`;
    const nested = optionPaths(value, path);
    return nested.length > 0 ? [path, ...nested] : [path];
  });
}
