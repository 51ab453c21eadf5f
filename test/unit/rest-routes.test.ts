import { create, createFileRegistry, type DescService, type MessageInitShape, setExtension } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  MethodOptionsSchema,
} from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { http } from "../../gen/pb/google/api/annotations_pb.ts";
import { HttpRuleSchema } from "../../gen/pb/google/api/http_pb.ts";
import { AuthService } from "../../gen/pb/identity/v1/auth_service_pb.ts";
import { UserService } from "../../gen/pb/identity/v1/user_service_pb.ts";
import { restRoutesFrom } from "../../src/rpc/rest-routes.ts";

type Rule = MessageInitShape<typeof HttpRuleSchema>;

interface MethodSpec {
  name: string;
  rule?: Rule;
  clientStreaming?: boolean;
  serverStreaming?: boolean;
}

let files = 0;

/**
 * A service `test.v1.Things` built at run time, each method taking `GetThingRequest`:
 * `thing_id` (string), `count` (int32), `parent` (message), `tags` (repeated string).
 */
function service(methods: MethodSpec[]): DescService {
  const { OPTIONAL, REPEATED } = FieldDescriptorProto_Label;
  const { STRING, INT32, MESSAGE } = FieldDescriptorProto_Type;
  const file = create(FileDescriptorProtoSchema, {
    name: `test/v1/things_${++files}.proto`,
    package: "test.v1",
    syntax: "proto3",
    messageType: [
      {
        name: "GetThingRequest",
        field: [
          { name: "thing_id", jsonName: "thingId", number: 1, label: OPTIONAL, type: STRING },
          { name: "count", jsonName: "count", number: 2, label: OPTIONAL, type: INT32 },
          {
            name: "parent",
            jsonName: "parent",
            number: 3,
            label: OPTIONAL,
            type: MESSAGE,
            typeName: ".test.v1.Parent",
          },
          { name: "tags", jsonName: "tags", number: 4, label: REPEATED, type: STRING },
        ],
      },
      { name: "Parent", field: [{ name: "id", jsonName: "id", number: 1, label: OPTIONAL, type: STRING }] },
      { name: "Thing", field: [{ name: "name", jsonName: "name", number: 1, label: OPTIONAL, type: STRING }] },
    ],
    service: [
      {
        name: "Things",
        method: methods.map((m) => {
          const options = create(MethodOptionsSchema);
          if (m.rule !== undefined) setExtension(options, http, create(HttpRuleSchema, m.rule));
          return {
            name: m.name,
            inputType: ".test.v1.GetThingRequest",
            outputType: ".test.v1.Thing",
            options,
            clientStreaming: m.clientStreaming ?? false,
            serverStreaming: m.serverStreaming ?? false,
          };
        }),
      },
    ],
  });
  return createFileRegistry(file, () => undefined).getService("test.v1.Things")!;
}

function get(path: string): Rule {
  return { pattern: { case: "get", value: path } };
}

function routesFor(rule: Rule) {
  return restRoutesFrom([service([{ name: "GetThing", rule }])]);
}

describe("restRoutesFrom", () => {
  describe("the generated services", () => {
    it("gives every AuthService RPC a route", () => {
      const routes = restRoutesFrom([AuthService]);
      expect(routes.map((r) => r.method)).toEqual(AuthService.methods);
    });

    it("derives POST /auth/id-token/signin with the whole body as the request", () => {
      const route = restRoutesFrom([AuthService]).find((r) => r.method === AuthService.method.signinWithIdToken);
      expect(route).toBeDefined();
      expect(route!.httpMethod).toBe("POST");
      expect(route!.template).toBe("/auth/id-token/signin");
      expect(route!.body).toBe("*");
    });

    it("matches the sign-in path exactly, and no other route matches it", () => {
      const routes = restRoutesFrom([AuthService]);
      const signin = routes.find((r) => r.method === AuthService.method.signinWithIdToken)!;
      expect(signin.match("/auth/id-token/signin")).toEqual({});
      expect(routes.filter((r) => r.match("/auth/id-token/signin") !== null)).toEqual([signin]);
      for (const path of [
        "/auth/id-token/signin/",
        "/auth/id-token/signin/x",
        "/auth/id-token",
        "/auth/id-token/signinx",
        "/auth/id-token/signi",
        "auth/id-token/signin",
        "//auth/id-token/signin",
        "/AUTH/id-token/signin",
        "/identity.v1.AuthService/SigninWithIdToken",
      ]) {
        expect(signin.match(path), path).toBeNull();
      }
    });

    it("builds the routes of AuthService and UserService together without collisions", () => {
      const routes = restRoutesFrom([AuthService, UserService]);
      const revoke = routes.find((r) => r.method === UserService.method.revokeSession);
      expect(revoke?.httpMethod).toBe("DELETE");
      expect(revoke!.match("/auth/sessions/ses_123")).toEqual({ session_id: "ses_123" });
      expect(revoke!.match("/auth/sessions")).toBeNull();
    });
  });

  describe("path templates", () => {
    it("binds a single-segment variable, percent-decoded", () => {
      const [route] = routesFor(get("/v1/things/{thing_id}"));
      expect(route!.match("/v1/things/abc")).toEqual({ thing_id: "abc" });
      expect(route!.match("/v1/things/a%20b")).toEqual({ thing_id: "a b" });
      expect(route!.match("/v1/things/a%2Fb")).toEqual({ thing_id: "a/b" });
      for (const path of ["/v1/things/", "/v1/things", "/v1/things/a/b", "/v1/things/abc/", "/v2/things/abc"]) {
        expect(route!.match(path), path).toBeNull();
      }
    });

    it("treats {name=*} like {name}", () => {
      const [route] = routesFor(get("/v1/things/{thing_id=*}"));
      expect(route!.match("/v1/things/abc")).toEqual({ thing_id: "abc" });
      expect(route!.match("/v1/things/a/b")).toBeNull();
    });

    it("binds several variables in order", () => {
      const [route] = routesFor(get("/v1/groups/{count}/things/{thing_id}"));
      expect(route!.match("/v1/groups/7/things/abc")).toEqual({ count: "7", thing_id: "abc" });
      expect(route!.match("/v1/groups/7/items/abc")).toBeNull();
    });

    it("matches dots in literal segments literally", () => {
      const [route] = routesFor(get("/v1/things.list"));
      expect(route!.match("/v1/things.list")).toEqual({});
      expect(route!.match("/v1/thingsXlist")).toBeNull();
    });

    // Regression: decodeURIComponent threw URIError on a malformed escape, so the handler answered
    // 500 `internal` (e.g. DELETE /auth/sessions/%E0) instead of a client error.
    it("returns null for a malformed percent-escape in a variable (regression: threw URIError, a 500)", () => {
      const [route] = routesFor(get("/v1/things/{thing_id}"));
      expect(route!.match("/v1/things/%E0%A4%A")).toBeNull();
    });

    it.each([
      ["a multi-segment variable", "/v1/{thing_id=things/*}"],
      ["a wildcard segment", "/v1/things/*"],
      ["a double wildcard", "/v1/things/**"],
      ["a custom verb", "/v1/things:search"],
      ["a variable with a verb", "/v1/things/{thing_id}:cancel"],
      ["a nested field path", "/v1/parents/{parent.id}"],
      ["a variable naming no field", "/v1/things/{nope}"],
      ["a variable naming a message field", "/v1/things/{parent}"],
      ["a variable naming a repeated field", "/v1/things/{tags}"],
      ["a template without a leading slash", "v1/things"],
      ["a percent sign in a literal", "/v1/th%20ings"],
    ])("rejects %s at build time", (_, template) => {
      expect(() => routesFor(get(template))).toThrow(/GetThing/);
    });

    it("rejects a custom pattern and a rule without pattern", () => {
      expect(() => routesFor({ pattern: { case: "custom", value: { kind: "HEAD", path: "/v1/things" } } })).toThrow(
        /unsupported google\.api\.http pattern/,
      );
      expect(() => routesFor({ body: "*" })).toThrow(/unsupported google\.api\.http pattern/);
    });
  });

  describe("verbs, bodies and bindings", () => {
    it.each([
      ["get", "GET"],
      ["put", "PUT"],
      ["post", "POST"],
      ["delete", "DELETE"],
      ["patch", "PATCH"],
    ] as const)("maps %s to %s", (verb, httpMethod) => {
      const [route] = routesFor({ pattern: { case: verb, value: "/v1/things" } });
      expect(route!.httpMethod).toBe(httpMethod);
    });

    it("accepts a body naming a field, and refuses one naming no field", () => {
      const [route] = routesFor({ pattern: { case: "patch", value: "/v1/things/{count}" }, body: "thing_id" });
      expect(route!.body).toBe("thing_id");
      expect(() => routesFor({ pattern: { case: "post", value: "/v1/things" }, body: "nope" })).toThrow(
        /body field "nope"/,
      );
    });

    it("adds a route for every additional binding", () => {
      const routes = routesFor({
        pattern: { case: "get", value: "/v1/things/{thing_id}" },
        additionalBindings: [
          { pattern: { case: "post", value: "/v1/things.get" }, body: "*" },
          { pattern: { case: "get", value: "/v1/groups/{count}/things/{thing_id}" } },
        ],
      });
      expect(routes.map((r) => [r.httpMethod, r.template, r.body, r.method.name])).toEqual([
        ["GET", "/v1/things/{thing_id}", "", "GetThing"],
        ["POST", "/v1/things.get", "*", "GetThing"],
        ["GET", "/v1/groups/{count}/things/{thing_id}", "", "GetThing"],
      ]);
      expect(routes[2]!.match("/v1/groups/3/things/x")).toEqual({ count: "3", thing_id: "x" });
    });

    it("checks additional bindings as strictly as the main one", () => {
      expect(() =>
        routesFor({
          pattern: { case: "get", value: "/v1/things/{thing_id}" },
          additionalBindings: [{ pattern: { case: "post", value: "/v1/things:get" }, body: "*" }],
        }),
      ).toThrow(/unsupported path segment/);
    });

    it("skips streaming methods and methods without google.api.http", () => {
      const routes = restRoutesFrom([
        service([
          { name: "GetThing", rule: get("/v1/things/{thing_id}") },
          { name: "WatchThings", rule: get("/v1/things:watch"), serverStreaming: true },
          { name: "Internal" },
        ]),
      ]);
      expect(routes.map((r) => r.method.name)).toEqual(["GetThing"]);
    });

    it("refuses two RPCs claiming the same route, even with different variable names", () => {
      expect(() =>
        restRoutesFrom([
          service([
            { name: "GetThing", rule: get("/v1/things/{thing_id}") },
            { name: "GetThingByCount", rule: get("/v1/things/{count}") },
          ]),
        ]),
      ).toThrow(/two RPCs claim the REST route GET \/v1\/things\/\{\}/);
    });

    it("allows the same path under different verbs", () => {
      const routes = restRoutesFrom([
        service([
          { name: "GetThing", rule: get("/v1/things/{thing_id}") },
          { name: "DeleteThing", rule: { pattern: { case: "delete", value: "/v1/things/{thing_id}" } } },
        ]),
      ]);
      expect(routes.map((r) => `${r.httpMethod} ${r.template}`)).toEqual([
        "GET /v1/things/{thing_id}",
        "DELETE /v1/things/{thing_id}",
      ]);
    });
  });
});
