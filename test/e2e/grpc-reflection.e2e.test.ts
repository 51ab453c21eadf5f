import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { createFileRegistry, fromBinary, getOption } from "@bufbuild/protobuf";
import { type FileDescriptorProto, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { http } from "../../gen/pb/google/api/annotations_pb.ts";
import { ErrorInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";
import { startTestApp, type TestApp } from "../support/app.ts";
import { markdownSnippet, shellCommands } from "../support/docs.ts";
import { devIdToken, grpcTarget } from "../support/signin-e2e.ts";

const SERVICES = [
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
  "identity.v1.AdminService",
  "identity.v1.AuthService",
  "identity.v1.MfaService",
  "identity.v1.UserService",
];
const HTTP_EXTENSION = 72295728; // google.api.http on google.protobuf.MethodOptions

/** `buf curl` (the devDependency's binary) against the server: stdout, stderr and exit code. */
function bufCurl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("node_modules/.bin/buf", ["curl", ...args], { timeout: 20_000 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr }),
    );
  });
}

// A reflection client as tools build one: grpc-js with the reflection protos loaded by
// @grpc/proto-loader (not the server's generated code).
const loaded = grpc.loadPackageDefinition(
  protoLoader.loadSync(["grpc/reflection/v1/reflection.proto", "grpc/reflection/v1alpha/reflection.proto"], {
    includeDirs: ["proto"],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  }),
) as unknown as { grpc: { reflection: Record<"v1" | "v1alpha", { ServerReflection: grpc.ServiceClientConstructor }> } };

interface ReflectionResponse {
  valid_host: string;
  message_response:
    "file_descriptor_response" | "all_extension_numbers_response" | "list_services_response" | "error_response";
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  all_extension_numbers_response?: { base_type_name: string; extension_number: number[] };
  list_services_response?: { service: { name: string }[] };
  error_response?: { error_code: number; error_message: string };
}

/** One reflection stream; `ask` sends a request and resolves with its answer. */
function openReflection(url: string, version: "v1" | "v1alpha") {
  const client = new loaded.grpc.reflection[version].ServerReflection(
    grpcTarget(url),
    grpc.credentials.createInsecure(),
  );
  const call = (
    client as unknown as { ServerReflectionInfo(): grpc.ClientDuplexStream<object, ReflectionResponse> }
  ).ServerReflectionInfo();
  const waiting: { resolve: (r: ReflectionResponse) => void; reject: (e: Error) => void }[] = [];
  call.on("data", (r: ReflectionResponse) => waiting.shift()?.resolve(r));
  call.on("error", (e: Error) => waiting.splice(0).forEach((w) => w.reject(e)));
  return {
    ask(request: object): Promise<ReflectionResponse> {
      return new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        call.write({ host: "identity.test", ...request });
      });
    },
    close() {
      call.end();
      client.close();
    },
  };
}

function filesOf(r: ReflectionResponse): FileDescriptorProto[] {
  expect(r.message_response, JSON.stringify(r.error_response)).toBe("file_descriptor_response");
  return r.file_descriptor_response!.file_descriptor_proto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
}

/**
 * gRPC server reflection on the service port, so grpcurl, buf curl and Postman need no copy of
 * proto/: buf curl lists services and methods and calls them from reflection alone; a grpc-js
 * reflection client gets AuthService's file with the google.api files it imports, enough to
 * rebuild the schema (HTTP annotations included).
 */
describe("gRPC server reflection", () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({ config: { dev: true } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("buf curl --list-services and --list-methods, over v1 and v1alpha", async () => {
    for (const protocol of ["grpc-v1", "grpc-v1alpha"]) {
      const services = await bufCurl([
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "--reflect-protocol",
        protocol,
        "--list-services",
        t.url,
      ]);
      expect(services.stderr).toBe("");
      expect(services.stdout.trim().split("\n")).toEqual(SERVICES);
    }
    const methods = await bufCurl(["--protocol", "grpc", "--http2-prior-knowledge", "--list-methods", t.url]);
    expect(methods.code).toBe(0);
    const listed = methods.stdout.trim().split("\n");
    for (const m of [
      "identity.v1.AuthService/SigninWithIdToken",
      "identity.v1.AuthService/RefreshToken",
      "identity.v1.AdminService/ListUsers",
      "grpc.health.v1.Health/Watch",
    ]) {
      expect(listed).toContain(m);
    }
  });

  it("buf curl calls RPCs with the schema from reflection alone", async () => {
    const idToken = await devIdToken(t.url, "reflected");
    const ok = await bufCurl([
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "-d",
      JSON.stringify({ id_token: idToken, provider: "dev" }),
      `${t.url}/identity.v1.AuthService/SigninWithIdToken`,
    ]);
    expect(ok.stderr).toBe("");
    const login = JSON.parse(ok.stdout) as { accessToken?: string; tokenType?: string };
    expect(login.tokenType).toBe("Bearer");
    expect(login.accessToken).toMatch(/^eyJ/);

    const refused = await bufCurl([
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "-d",
      JSON.stringify({ id_token: "not-a-jwt", provider: "dev" }),
      `${t.url}/identity.v1.AuthService/SigninWithIdToken`,
    ]);
    expect(refused.code).not.toBe(0);
    const error = JSON.parse(refused.stderr) as { code: string; details: { type: string; value: string }[] };
    expect(error.code).toBe("invalid_argument");
    expect(error.details[0]!.type).toBe("google.rpc.ErrorInfo");
    expect(fromBinary(ErrorInfoSchema, Buffer.from(error.details[0]!.value, "base64")).reason).toBe(
      "id_token_malformed",
    );
  });

  it("runs the README's buf curl commands as written (schema, reflection, health), and its curl for snake_case JSON", async () => {
    const shell = (command: string, env: Record<string, string>) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          "bash",
          ["-c", command],
          { timeout: 30_000, env: { ...process.env, ...env } },
          (error, stdout, stderr) =>
            resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr }),
        );
      });
    const here = (command: string) =>
      command.replaceAll("http://localhost:8080", t.url).replaceAll("localhost:8080", new URL(t.url).host);
    const idToken = () => devIdToken(t.url, "readme-buf-curl");

    const commands = ["buf-curl-schema", "buf-curl-reflection", "buf-curl-health"]
      .flatMap((name) => shellCommands(markdownSnippet("README.md", name)))
      .filter((c) => c.startsWith("npx buf curl"));
    expect(commands.length).toBe(5);
    const seen = new Set<string>();
    for (const command of commands) {
      const r = await shell(here(command), { ID_TOKEN: await idToken() });
      expect(r.stderr, command).toBe("");
      expect(r.code, command).toBe(0);
      if (command.includes("--list-services")) {
        expect(r.stdout.trim().split("\n"), command).toEqual(SERVICES);
        seen.add("services");
      } else if (command.includes("--list-methods")) {
        expect(r.stdout, command).toContain("identity.v1.AuthService/SigninWithIdToken\n");
        seen.add("methods");
      } else if (command.includes("Health/Check")) {
        expect(JSON.parse(r.stdout), command).toEqual({ status: "SERVING" });
        seen.add("health");
      } else {
        // camelCase, with the zero values --emit-defaults adds, as the README says.
        const login = JSON.parse(r.stdout) as Record<string, unknown>;
        expect(login["accessToken"], command).toMatch(/^eyJ/);
        expect(login["requiresMfa"], command).toBe(false);
        expect(
          Object.keys(login).filter((k) => k.includes("_")),
          command,
        ).toEqual([]);
        seen.add(command.includes("--schema .") ? "signin-schema" : "signin-reflection");
      }
    }
    expect([...seen].sort()).toEqual(["health", "methods", "services", "signin-reflection", "signin-schema"]);

    // The README's way to the snake_case names: the same RPC as Connect JSON with curl.
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const curl = /`(curl -s localhost:8080\/identity\.v1\.AuthService\/SigninWithIdToken [^`]+)`/.exec(readme)?.[1];
    expect(curl).toBeDefined();
    const r = await shell(here(curl!), { ID_TOKEN: await idToken() });
    const login = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(login["access_token"]).toMatch(/^eyJ/);
    expect(login["requires_mfa"]).toBe(false);
  });

  it("describes identity.v1.AuthService with the google.api files it imports, each file once per stream", async () => {
    const stream = openReflection(t.url, "v1");
    try {
      const first = await stream.ask({ file_containing_symbol: "identity.v1.AuthService" });
      expect(first.valid_host).toBe("identity.test");
      const files = filesOf(first);
      expect(files[0]!.name).toBe("identity/v1/auth_service.proto");
      expect(files.map((f) => f.name).sort()).toEqual([
        "google/api/annotations.proto",
        "google/api/http.proto",
        "google/protobuf/descriptor.proto",
        "google/protobuf/struct.proto",
        "identity/v1/auth_service.proto",
      ]);
      // What was sent is a complete, self-contained schema: the annotations read back.
      const registry = createFileRegistry(files[0]!, (name) => files.find((f) => f.name === name));
      const service = registry.getService("identity.v1.AuthService")!;
      const signin = service.methods.find((m) => m.name === "SigninWithIdToken")!;
      expect(getOption(signin, http).pattern).toEqual({ case: "post", value: "/auth/id-token/signin" });
      expect(registry.getMessage("google.api.HttpRule")).toBeDefined();

      // Files this stream already has are not sent again; the one asked for always is.
      expect(filesOf(await stream.ask({ file_by_filename: "google/api/http.proto" })).map((f) => f.name)).toEqual([
        "google/api/http.proto",
      ]);
      expect(
        filesOf(await stream.ask({ file_containing_symbol: "identity.v1.AuthService.SigninWithIdToken" })).map(
          (f) => f.name,
        ),
      ).toEqual(["identity/v1/auth_service.proto"]);
      expect(filesOf(await stream.ask({ file_containing_symbol: "google.api.HttpRule" }))[0]!.name).toBe(
        "google/api/http.proto",
      );
      expect(
        filesOf(await stream.ask({ file_containing_symbol: "identity.v1.LoginResponse.access_token" }))[0]!.name,
      ).toBe("identity/v1/auth_service.proto");
      expect(filesOf(await stream.ask({ file_containing_symbol: "google.rpc.ErrorInfo" }))[0]!.name).toBe(
        "google/rpc/error_details.proto",
      );
      expect(
        filesOf(
          await stream.ask({
            file_containing_extension: {
              containing_type: "google.protobuf.MethodOptions",
              extension_number: HTTP_EXTENSION,
            },
          }),
        )[0]!.name,
      ).toBe("google/api/annotations.proto");

      const numbers = await stream.ask({ all_extension_numbers_of_type: "google.protobuf.MethodOptions" });
      expect(numbers.all_extension_numbers_response).toEqual({
        base_type_name: "google.protobuf.MethodOptions",
        extension_number: [HTTP_EXTENSION],
      });
      const listed = await stream.ask({ list_services: "" });
      expect(listed.list_services_response!.service.map((s) => s.name).sort()).toEqual(SERVICES);

      for (const missing of [
        { file_containing_symbol: "identity.v1.NoSuchService" },
        { file_by_filename: "identity/v1/none.proto" },
        { file_containing_extension: { containing_type: "google.protobuf.MethodOptions", extension_number: 1 } },
      ]) {
        const r = await stream.ask(missing);
        expect(r.message_response).toBe("error_response");
        expect(r.error_response!.error_code).toBe(grpc.status.NOT_FOUND);
      }
    } finally {
      stream.close();
    }

    // A new stream starts from nothing: the imports come again.
    const fresh = openReflection(t.url, "v1alpha");
    try {
      const names = filesOf(await fresh.ask({ file_by_filename: "identity/v1/admin_service.proto" })).map(
        (f) => f.name,
      );
      expect(names[0]).toBe("identity/v1/admin_service.proto");
      expect(names).toContain("google/api/annotations.proto");
      expect(names).toContain("google/protobuf/descriptor.proto");
    } finally {
      fresh.close();
    }
  });
});

describe("reflection is off outside dev mode unless server.reflection says so", () => {
  const cases = [
    { config: {}, on: false },
    { config: { dev: true, "server.reflection": false }, on: false },
    { config: { "server.reflection": true }, on: true },
  ];
  for (const { config, on } of cases) {
    it(`${JSON.stringify(config)}: ${on ? "on" : "off"}`, async () => {
      const t = await startTestApp({ config });
      try {
        const listed = await bufCurl(["--protocol", "grpc", "--http2-prior-knowledge", "--list-services", t.url]);
        if (on) {
          expect(listed.stdout.trim().split("\n")).toEqual(SERVICES);
          return;
        }
        expect(listed.code).not.toBe(0);
        expect(listed.stderr).toContain("unimplemented");
        const stream = openReflection(t.url, "v1");
        await expect(stream.ask({ list_services: "" })).rejects.toMatchObject({ code: grpc.status.UNIMPLEMENTED });
        stream.close();
      } finally {
        await t.close();
      }
    });
  }
});
