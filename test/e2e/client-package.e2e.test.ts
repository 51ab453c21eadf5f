/**
 * The TypeScript client outside this repository: `npm pack` of clients/ts
 * (compiled JavaScript + .d.ts of gen/pb, an exports map) into a project made as
 * clients/ts/README.md says (`npm init -y`, `npm pkg set type=module`, its install line), without
 * network (registry packages come from this repo's node_modules), typechecked with the README's
 * tsconfig and `@types/node`, and the README's Connect and gRPC examples run as written against a
 * dev-mode service (IDENTITY_URL points them at it).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { markdownSnippet } from "../support/docs.ts";
import { startServiceProcess, type ServiceProcess } from "../support/service-process.ts";

const repo = resolve(import.meta.dirname, "../..");

/** A command run to completion; its output on failure. */
function run(command: string, args: string[], cwd: string, env: Record<string, string> = {}): string {
  // npm without network: everything comes from the tarball and this repo's node_modules.
  const r = spawnSync(command, args, {
    cwd,
    env: {
      ...process.env,
      npm_config_offline: "true",
      npm_config_audit: "false",
      npm_config_fund: "false",
      npm_config_update_notifier: "false",
      ...env,
    },
    encoding: "utf8",
    timeout: 120_000,
  });
  if (r.status !== 0) throw new Error(`${command} ${args.join(" ")} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const CLIENT_README = "clients/ts/README.md";
const snippet = (name: string) => markdownSnippet(CLIENT_README, name);

describe("the TypeScript client package", () => {
  let dir: string;
  let project: string;
  let tarball: string;
  let service: ServiceProcess;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "identity-client-"));
    const packed = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", dir], join(repo, "clients/ts"))) as {
      filename: string;
      files: { path: string }[];
    }[];
    tarball = join(dir, packed[0]!.filename);
    project = join(dir, "consumer");
    mkdirSync(project);
    // The README's install steps, in order; a registry name is installed from this repo's copy.
    const steps = snippet("install").split("\n");
    expect(steps).toEqual([
      "npm init -y",
      "npm pkg set type=module",
      "npm install /path/to/idtoken-signin-client-0.1.0.tgz @bufbuild/protobuf @connectrpc/connect @connectrpc/connect-node",
      "npm install --save-dev typescript @types/node",
    ]);
    for (const step of steps) {
      const [npm, ...args] = step.split(" ");
      const offline = args.map((a) =>
        a.endsWith(".tgz")
          ? tarball
          : /^@?[a-z]/.test(a) && args[0] === "install" && a !== "install"
            ? `file:${join(repo, "node_modules", a)}`
            : a,
      );
      run(npm!, offline, project);
    }
    writeFileSync(join(project, "tsconfig.json"), snippet("tsconfig"));
    service = await startServiceProcess({ config: {}, args: ["--dev"] });
  }, 180_000);
  afterAll(async () => {
    await service?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("packs compiled JavaScript and declarations of every generated file, and no TypeScript sources", () => {
    const files = run("tar", ["tzf", tarball], dir)
      .trim()
      .split("\n")
      .map((f) => f.replace(/^package\//, ""))
      .sort();
    expect(files).toContain("package.json");
    expect(files).toContain("index.js");
    expect(files).toContain("index.d.ts");
    for (const base of [
      "identity/v1/auth_service_pb",
      "identity/v1/user_service_pb",
      "identity/v1/mfa_service_pb",
      "identity/v1/admin_service_pb",
      "google/rpc/error_details_pb",
    ]) {
      expect(files).toContain(`dist/${base}.js`);
      expect(files).toContain(`dist/${base}.d.ts`);
    }
    expect(files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
    const installed = JSON.parse(
      readFileSync(join(project, "node_modules/@idtoken-signin/client/package.json"), "utf8"),
    ) as { dependencies: Record<string, string> };
    expect(Object.keys(installed.dependencies)).toEqual(["@bufbuild/protobuf"]);
  });

  it("the project is what `npm init -y` made, made ESM, with the client and its peers as dependencies", () => {
    const pkg = JSON.parse(readFileSync(join(project, "package.json"), "utf8")) as {
      type: string;
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    expect(pkg.type).toBe("module");
    expect(Object.keys(pkg.dependencies).sort()).toEqual([
      "@bufbuild/protobuf",
      "@connectrpc/connect",
      "@connectrpc/connect-node",
      "@idtoken-signin/client",
    ]);
    expect(Object.keys(pkg.devDependencies).sort()).toEqual(["@types/node", "typescript"]);
  });

  it("typechecks the README's examples and a subpath import with the README's tsconfig and @types/node", () => {
    writeFileSync(join(project, "connect.ts"), snippet("connect-example"));
    writeFileSync(join(project, "grpc.ts"), snippet("grpc-example"));
    // A subpath of the exports map, and the entry's types, as another project's compiler sees them.
    writeFileSync(
      join(project, "subpath.ts"),
      [
        'import { create, toJsonString } from "@bufbuild/protobuf";',
        'import { LoginResponseSchema } from "@idtoken-signin/client/identity/v1/auth_service_pb";',
        'import { ErrorInfoSchema, UserService, type LoginResponse } from "@idtoken-signin/client";',
        "const login: LoginResponse = create(LoginResponseSchema, { expiresIn: 5 });",
        "console.log(toJsonString(LoginResponseSchema, login), UserService.typeName, ErrorInfoSchema.typeName);",
      ].join("\n"),
    );
    // `npx tsc`, as the README says (the project's own TypeScript), every declaration file checked.
    run("npx", ["tsc", "--skipLibCheck", "false"], project);
    expect(run(process.execPath, ["subpath.ts"], project).trim()).toBe(
      '{"expiresIn":5} identity.v1.UserService google.rpc.ErrorInfo',
    );
  });

  it("runs the README's Connect example as written against a dev-mode service", () => {
    const out = run(process.execPath, ["connect.ts"], project, { IDENTITY_URL: service.url }).trim().split("\n");
    expect(out[0]).toMatch(/^signed in: usr_[a-z0-9]+ (low|medium)$/);
    expect(out[1]).toBe(`me: ${out[0]!.split(" ")[2]} alice@example.com`);
    expect(out[2]).toBe("refused: Unauthenticated id_token_replayed");
  });

  it("runs the README's gRPC example as written against a dev-mode service", () => {
    const out = run(process.execPath, ["grpc.ts"], project, { IDENTITY_URL: service.url }).trim().split("\n");
    expect(out[0]).toMatch(/^signed in: usr_[a-z0-9]+ access token for 1800 s$/);
    expect(out[1]).toBe("second factor enrolled: false");
  });
});
