/**
 * prisma-diff: the SQL migration between two Prisma schemas, from Prisma's own schema engine,
 * offline and from `npm ci` alone.
 *
 * Prisma 7's CLI downloads a native schema-engine binary for `migrate diff`, which an air-gapped
 * install cannot. Prisma 6.19's CLI runs the same diff through the WebAssembly schema engine that
 * ships inside its npm package (`engine: "js"` + a driver adapter). Those Prisma 6.19 packages are
 * this folder's dependencies: it is an npm workspace, so `npm ci` at the root installs them into
 * tools/prisma-diff/node_modules, where they cannot shadow Prisma 7 (an npm alias at the root would
 * put a second `prisma` into node_modules/.bin, and which of the two wins is a race).
 *
 *   node tools/prisma-diff/prisma-diff.ts --provider sqlite|postgresql --to NEW.prisma [--from OLD.prisma]
 *
 * `--from` omitted: the diff from an empty database (the first migration, or the whole model).
 * The schemas' generator and datasource blocks are replaced; only the models matter.
 * PostgreSQL needs a reachable server for the engine to connect to (`--postgres-url`, or
 * PRISMA_DIFF_PG_URL); nothing is written to it. `npm run db:diff` finds or starts one.
 * The SQL goes to stdout. Used by scripts/db-diff.sh and test/contract/migrations.test.ts.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export type Dialect = "sqlite" | "postgresql";

export interface PrismaDiffRequest {
  dialect: Dialect;
  /** The schema to migrate to. */
  to: string;
  /** The schema to migrate from; omitted: an empty database. */
  from?: string;
  /** A PostgreSQL server the engine may connect to (required for postgresql). */
  postgresUrl?: string;
}

/** Prisma 6.19 only: its CLI is the one that can run the WebAssembly schema engine. */
const PRISMA_VERSION = /^6\.19\./;
const fromHere = createRequire(join(dirname(fileURLToPath(import.meta.url)), "package.json"));

function prismaCli(): string {
  let pkg: string;
  try {
    pkg = fromHere.resolve("prisma/package.json");
  } catch {
    throw new Error(
      "prisma-diff: Prisma 6.19 is not installed in tools/prisma-diff/node_modules; run `npm ci` at the repository root",
    );
  }
  const version = (JSON.parse(readFileSync(pkg, "utf8")) as { version: string }).version;
  if (!PRISMA_VERSION.test(version))
    throw new Error(`prisma-diff: needs Prisma 6.19 (its WebAssembly schema engine), found ${version} at ${pkg}`);
  return join(dirname(pkg), "build", "index.js");
}

/** The models of `schemaFile` under a generator and datasource that Prisma 6.19's WebAssembly engine accepts. */
function engineSchema(schemaFile: string, dialect: Dialect, url: string): string {
  const models: string[] = [];
  let inBlock = false;
  for (const line of readFileSync(schemaFile, "utf8").split("\n")) {
    if (!inBlock && /^\s*(generator|datasource)\s+\w+\s*\{/.test(line)) inBlock = true;
    else if (inBlock) inBlock = !/^\s*\}/.test(line);
    else models.push(line);
  }
  // engineType "client": without it the CLI fetches a native query engine before diffing.
  return [
    `generator client {\n  provider = "prisma-client"\n  output = "./unused"\n  engineType = "client"\n  previewFeatures = ["queryCompiler", "driverAdapters"]\n}`,
    `datasource db {\n  provider = ${JSON.stringify(dialect)}\n  url = ${JSON.stringify(url)}\n}`,
    ...models,
  ].join("\n");
}

/** The SQL that migrates a database from `from` (or empty) to `to`, for `dialect`. */
export async function prismaDiff(request: PrismaDiffRequest): Promise<string> {
  const cli = prismaCli();
  const work = mkdtempSync(join(tmpdir(), "prisma-diff-"));
  try {
    let url: string;
    let adapter: string;
    if (request.dialect === "sqlite") {
      url = `file:${join(work, "scratch.db")}`;
      adapter = `import { PrismaBetterSQLite3 as Adapter } from ${JSON.stringify(fromHere.resolve("@prisma/adapter-better-sqlite3"))};\nconst make = () => new Adapter({ url: ${JSON.stringify(url)} });`;
    } else {
      if (request.postgresUrl === undefined || request.postgresUrl === "") {
        throw new Error("prisma-diff: postgresql needs a server to connect to (--postgres-url or PRISMA_DIFF_PG_URL)");
      }
      url = request.postgresUrl;
      adapter = `import { PrismaPg as Adapter } from ${JSON.stringify(fromHere.resolve("@prisma/adapter-pg"))};\nconst make = () => new Adapter({ connectionString: ${JSON.stringify(url)} });`;
    }
    const to = join(work, "to.prisma");
    writeFileSync(to, engineSchema(request.to, request.dialect, url));
    const fromArgs =
      request.from === undefined ? ["--from-empty"] : ["--from-schema-datamodel", join(work, "from.prisma")];
    if (request.from !== undefined)
      writeFileSync(join(work, "from.prisma"), engineSchema(request.from, request.dialect, url));
    const config = join(work, "prisma.config.ts");
    writeFileSync(
      config,
      `${adapter}\nexport default { schema: ${JSON.stringify(to)}, experimental: { adapter: true }, engine: "js", async adapter() { return make(); } };\n`,
    );
    const stdout = await new Promise<string>((resolvePromise, reject) => {
      execFile(
        process.execPath,
        [cli, "migrate", "diff", "--config", config, ...fromArgs, "--to-schema-datamodel", to, "--script"],
        {
          cwd: work,
          // No update check, no telemetry: nothing leaves the machine.
          env: {
            ...process.env,
            CHECKPOINT_DISABLE: "1",
            PRISMA_HIDE_UPDATE_MESSAGE: "1",
            PRISMA_SKIP_POSTINSTALL_GENERATE: "1",
          },
          maxBuffer: 16 * 1024 * 1024,
        },
        (error, out, err) =>
          error === null
            ? resolvePromise(out)
            : reject(new Error(`prisma-diff: prisma migrate diff failed: ${err || out || error.message}`)),
      );
    });
    return stdout
      .split("\n")
      .filter((line) => !line.startsWith("Loaded Prisma config from"))
      .join("\n")
      .replace(/^\n+/, "")
      .replace(/\n*$/, "\n");
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function usage(message: string): never {
  process.stderr.write(
    `prisma-diff: ${message}\nusage: node tools/prisma-diff/prisma-diff.ts --provider sqlite|postgresql --to NEW.prisma [--from OLD.prisma] [--postgres-url URL]\n`,
  );
  process.exit(2);
}

async function main(args: string[]): Promise<void> {
  const options = new Map<string, string>();
  for (let i = 0; i < args.length; i += 2) {
    const [key, value] = [args[i]!, args[i + 1]];
    if (!["--provider", "--to", "--from", "--postgres-url"].includes(key)) usage(`unknown argument ${key}`);
    if (value === undefined) usage(`${key} needs a value`);
    options.set(key, value);
  }
  const dialect = options.get("--provider");
  if (dialect !== "sqlite" && dialect !== "postgresql") usage("--provider must be sqlite or postgresql");
  const to = options.get("--to") ?? usage("--to must name a schema file");
  const from = options.get("--from");
  const postgresUrl = options.get("--postgres-url") ?? process.env["PRISMA_DIFF_PG_URL"];
  try {
    const sql = await prismaDiff({
      dialect,
      to,
      ...(from === undefined ? {} : { from }),
      ...(postgresUrl === undefined ? {} : { postgresUrl }),
    });
    process.stdout.write(sql);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exit(1);
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main(process.argv.slice(2));
}
