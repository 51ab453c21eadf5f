/**
 * The TypeScript client outside this repository (issue 11): `npm pack` of clients/ts (compiled
 * JavaScript + .d.ts of gen/pb, an exports map), installed from the tarball into a fresh project
 * without network, typechecked there with the repo's TypeScript, and the README's Node snippet
 * run as written (only its base URL pointed at this test's server) with a Connect gRPC client.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServiceProcess, type ServiceProcess } from "../support/service-process.ts";

const repo = resolve(import.meta.dirname, "../..");

/** A command run to completion; its output on failure. */
function run(command: string, args: string[], cwd: string): string {
  // npm without network: everything comes from the tarball and this repo's node_modules.
  const env = { ...process.env, npm_config_offline: "true", npm_config_audit: "false", npm_config_fund: "false", npm_config_update_notifier: "false" };
  const r = spawnSync(command, args, { cwd, env, encoding: "utf8", timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${command} ${args.join(" ")} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The README's fenced block after `<!-- snippet: NAME … -->`. */
function readmeSnippet(name: string): string {
  const readme = readFileSync(join(repo, "README.md"), "utf8");
  const m = new RegExp(`<!-- snippet: ${name}[^>]*-->\\n\`\`\`ts\\n([\\s\\S]*?)\\n\`\`\`\\n`).exec(readme);
  if (m === null) throw new Error(`README has no snippet ${name}`);
  return m[1]!;
}

describe("the TypeScript client package", () => {
  let dir: string;
  let project: string;
  let tarball: string;
  let service: ServiceProcess;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "identity-client-"));
    const packed = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", dir], join(repo, "clients/ts"))) as { filename: string; files: { path: string }[] }[];
    tarball = join(dir, packed[0]!.filename);
    project = join(dir, "consumer");
    mkdirSync(project);
    const local = (name: string) => `file:${join(repo, "node_modules", name)}`;
    writeFileSync(join(project, "package.json"), JSON.stringify({
      name: "consumer",
      private: true,
      type: "module",
      dependencies: {
        "@idtoken-signin/client": `file:${tarball}`,
        "@bufbuild/protobuf": local("@bufbuild/protobuf"),
        "@connectrpc/connect": local("@connectrpc/connect"),
        "@connectrpc/connect-node": local("@connectrpc/connect-node"),
      },
    }));
    run("npm", ["install", "--offline"], project);
    service = await startServiceProcess({ config: {}, args: ["--dev"] });
  }, 180_000);
  afterAll(async () => {
    await service?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("packs compiled JavaScript and declarations of every generated file, and no TypeScript sources", () => {
    const files = run("tar", ["tzf", tarball], dir).trim().split("\n").map((f) => f.replace(/^package\//, "")).sort();
    expect(files).toContain("package.json");
    expect(files).toContain("index.js");
    expect(files).toContain("index.d.ts");
    for (const base of ["identity/v1/auth_service_pb", "identity/v1/user_service_pb", "identity/v1/mfa_service_pb", "identity/v1/admin_service_pb", "google/rpc/error_details_pb"]) {
      expect(files).toContain(`dist/${base}.js`);
      expect(files).toContain(`dist/${base}.d.ts`);
    }
    expect(files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
    const installed = JSON.parse(readFileSync(join(project, "node_modules/@idtoken-signin/client/package.json"), "utf8")) as { dependencies: Record<string, string> };
    expect(Object.keys(installed.dependencies)).toEqual(["@bufbuild/protobuf"]);
  });

  it("runs the README's Node snippet as written against a dev-mode service, typechecked with the exports map", () => {
    const snippet = readmeSnippet("node-client");
    expect(snippet).toContain('const baseUrl = "http://localhost:8080";');
    writeFileSync(join(project, "snippet.ts"), snippet.replace('"http://localhost:8080"', JSON.stringify(service.url)));
    // A subpath of the exports map, and the entry's types, as another project's compiler sees them.
    writeFileSync(join(project, "subpath.ts"), [
      'import { create, toJsonString } from "@bufbuild/protobuf";',
      'import { LoginResponseSchema } from "@idtoken-signin/client/identity/v1/auth_service_pb";',
      'import { ErrorInfoSchema, UserService, type LoginResponse } from "@idtoken-signin/client";',
      'const login: LoginResponse = create(LoginResponseSchema, { expiresIn: 5 });',
      'console.log(toJsonString(LoginResponseSchema, login), UserService.typeName, ErrorInfoSchema.typeName);',
    ].join("\n"));
    writeFileSync(join(project, "tsconfig.json"), JSON.stringify({
      compilerOptions: {
        target: "es2022", module: "nodenext", moduleResolution: "nodenext", strict: true, noEmit: true,
        // DOM for connect's HeadersInit; every declaration file checked, ours included.
        lib: ["es2022", "dom"], skipLibCheck: false,
        // Node's types (fetch, console; connect-node's declarations need them) from this repo.
        typeRoots: [join(repo, "node_modules/@types")], types: ["node"],
      },
      files: ["snippet.ts", "subpath.ts"],
    }));
    run(process.execPath, [join(repo, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json"], project);

    expect(run(process.execPath, ["subpath.ts"], project).trim()).toBe('{"expiresIn":5} identity.v1.UserService google.rpc.ErrorInfo');
    const out = run(process.execPath, ["snippet.ts"], project).trim();
    expect(out).toMatch(/^usr_[a-z0-9]+ (low|medium) 1800$/);
  });
});
