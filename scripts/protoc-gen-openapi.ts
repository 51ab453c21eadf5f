/**
 * protoc-gen-openapi: an OpenAPI 3.1 document of the REST API, generated from proto/ by buf
 * (buf.gen.yaml) like the other generated code. One path per `google.api.http` binding, with the
 * request and response bodies as this service writes them: snake_case proto field names, every
 * implicit field always present (`required`), `optional` and message fields only when set, 64-bit
 * integers as strings — the REST layer's protobuf JSON options (src/rpc/http-handler.ts). Errors
 * have one body and the stable codes of src/rpc/error-codes.ts.
 */
import {
  type DescEnum,
  type DescField,
  type DescMessage,
  type DescMethod,
  getOption,
  hasOption,
  ScalarType,
} from "@bufbuild/protobuf";
import { FeatureSet_FieldPresence } from "@bufbuild/protobuf/wkt";
import { createEcmaScriptPlugin, getComments, runNodeJs } from "@bufbuild/protoplugin";
import { http } from "../gen/pb/google/api/annotations_pb.ts";
import { ERROR_TABLE, httpStatusOf, statusName } from "../src/rpc/error-codes.ts";

type JsonSchema = Record<string, unknown>;

function scalarSchema(scalar: ScalarType): JsonSchema {
  switch (scalar) {
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.BYTES:
      return { type: "string", contentEncoding: "base64" };
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return { type: "number" };
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return { type: "integer", format: "int32" };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return { type: "integer", format: "int32", minimum: 0 };
    // Protobuf JSON writes 64-bit integers as strings (they do not fit a double).
    default:
      return { type: "string", format: "int64", pattern: "^-?[0-9]+$" };
  }
}

/** Well-known types have a JSON form of their own. */
const WELL_KNOWN: Record<string, JsonSchema> = {
  "google.protobuf.Struct": { type: "object", additionalProperties: true },
  "google.protobuf.Value": {},
  "google.protobuf.ListValue": { type: "array" },
  "google.protobuf.Timestamp": { type: "string", format: "date-time" },
  "google.protobuf.Duration": { type: "string", pattern: "^-?[0-9]+(\\.[0-9]+)?s$" },
  "google.protobuf.Empty": { type: "object", additionalProperties: false },
};

/** A proto comment as plain text (protoc keeps the space after `//` on every line). */
function clean(text: string | undefined): string {
  return (text ?? "")
    .split("\n")
    .map((l) => l.replace(/^ /, ""))
    .join("\n")
    .trim();
}

function description(text: string | undefined): JsonSchema {
  const t = clean(text);
  return t === "" ? {} : { description: t };
}

/**
 * Component schemas for every message reached, by full name. In messages the server answers
 * with, `required` lists what it always writes (implicit-presence scalars, repeated and map
 * fields); a request's fields are all optional (proto3), so request messages list none.
 */
function createSchemas() {
  const schemas: Record<string, JsonSchema> = {};
  const alwaysWritten = new Map<string, string[]>();
  const answered = new Set<string>();
  const ref = (typeName: string) => ({ $ref: `#/components/schemas/${typeName}` });

  function enumSchema(e: DescEnum): JsonSchema {
    return { type: "string", enum: e.values.map((v) => v.name) };
  }

  function fieldSchema(f: DescField): JsonSchema {
    const comments = description(getComments(f).leading);
    switch (f.fieldKind) {
      case "scalar":
        return { ...scalarSchema(f.scalar), ...comments };
      case "enum":
        return { ...enumSchema(f.enum), ...comments };
      case "message":
        return { ...messageRef(f.message), ...comments };
      case "list": {
        const items =
          f.listKind === "scalar"
            ? scalarSchema(f.scalar)
            : f.listKind === "enum"
              ? enumSchema(f.enum)
              : messageRef(f.message);
        return { type: "array", items, ...comments };
      }
      case "map": {
        const values =
          f.mapKind === "scalar"
            ? scalarSchema(f.scalar)
            : f.mapKind === "enum"
              ? enumSchema(f.enum)
              : messageRef(f.message);
        return { type: "object", additionalProperties: values, ...comments };
      }
    }
  }

  function messageRef(m: DescMessage): JsonSchema {
    const wkt = WELL_KNOWN[m.typeName];
    if (wkt !== undefined) return wkt;
    if (!(m.typeName in schemas)) {
      schemas[m.typeName] = {}; // placeholder: recursive types
      const properties: Record<string, JsonSchema> = {};
      const required: string[] = [];
      for (const f of m.fields) {
        properties[f.name] = fieldSchema(f);
        const written =
          f.fieldKind === "list" ||
          f.fieldKind === "map" ||
          ((f.fieldKind === "scalar" || f.fieldKind === "enum") &&
            f.presence === FeatureSet_FieldPresence.IMPLICIT &&
            f.oneof === undefined);
        if (written) required.push(f.name);
      }
      alwaysWritten.set(m.typeName, required);
      schemas[m.typeName] = {
        type: "object",
        ...description(getComments(m).leading),
        properties,
        additionalProperties: false,
      };
    }
    return ref(m.typeName);
  }

  /** `m` is an answer: it and every message inside it get their `required` lists. */
  function answerRef(m: DescMessage): JsonSchema {
    const mark = (msg: DescMessage) => {
      if (answered.has(msg.typeName) || WELL_KNOWN[msg.typeName] !== undefined) return;
      answered.add(msg.typeName);
      for (const f of msg.fields) {
        if (f.fieldKind === "message") mark(f.message);
        if ((f.fieldKind === "list" && f.listKind === "message") || (f.fieldKind === "map" && f.mapKind === "message"))
          mark(f.message);
      }
    };
    mark(m);
    return messageRef(m);
  }

  /** The schemas, with `required` in the answered ones. */
  function finish(): Record<string, JsonSchema> {
    const out: Record<string, JsonSchema> = {};
    for (const name of Object.keys(schemas).sort()) {
      const required = answered.has(name) ? (alwaysWritten.get(name) ?? []) : [];
      const { additionalProperties, ...rest } = schemas[name]!;
      out[name] = { ...rest, ...(required.length > 0 ? { required } : {}), additionalProperties };
    }
    return out;
  }

  return { messageRef, answerRef, finish };
}

type Schemas = ReturnType<typeof createSchemas>;

function operation(
  method: DescMethod,
  verb: string,
  template: string,
  body: string,
  { messageRef, answerRef }: Schemas,
) {
  const pathVars = [...template.matchAll(/\{([a-z_][a-z0-9_]*)(?:=\*)?\}/g)].map((m) => m[1]!);
  const parameters: JsonSchema[] = pathVars.map((name) => {
    const f = method.input.fields.find((x) => x.name === name)!;
    return { name, in: "path", required: true, schema: fieldSchema1(f), ...description(getComments(f).leading) };
  });
  if (body !== "*") {
    for (const f of method.input.fields) {
      if (pathVars.includes(f.name) || f.name === body) continue;
      if (f.fieldKind !== "scalar" && f.fieldKind !== "enum") continue;
      parameters.push({
        name: f.name,
        in: "query",
        required: false,
        schema: fieldSchema1(f),
        ...description(getComments(f).leading),
      });
    }
  }
  const comments = clean(getComments(method).leading);
  const op: JsonSchema = {
    operationId: `${method.parent.name}_${method.name}`,
    tags: [method.parent.name],
    summary: comments
      .split(/\.\s|\n\n/)[0]
      ?.replace(/\n/g, " ")
      .slice(0, 200),
    ...(comments === "" ? {} : { description: comments }),
    ...(parameters.length > 0 ? { parameters } : {}),
    responses: {
      "200": { description: "OK", content: { "application/json": { schema: answerRef(method.output) } } },
      default: { $ref: "#/components/responses/Error" },
    },
    "x-rpc": `/${method.parent.typeName}/${method.name}`,
  };
  if (body !== "") {
    const f = body === "*" ? undefined : method.input.fields.find((x) => x.name === body);
    const schema = f === undefined ? messageRef(method.input) : fieldSchema1(f);
    // Every request field is optional in proto3, so a POST without a body is an empty message.
    op["requestBody"] = { required: false, content: { "application/json": { schema } } };
  }
  return op;

  function fieldSchema1(f: DescField): JsonSchema {
    if (f.fieldKind === "scalar") return scalarSchema(f.scalar);
    if (f.fieldKind === "enum") return { type: "string", enum: f.enum.values.map((v) => v.name) };
    if (f.fieldKind === "message") return messageRef(f.message);
    return {};
  }
}

function errorComponents() {
  const codes = Object.keys(ERROR_TABLE).sort();
  const rows = codes.map((code) => {
    const entry = ERROR_TABLE[code as keyof typeof ERROR_TABLE];
    return `| \`${code}\` | ${entry.http ?? httpStatusOf(entry.code)} | \`${statusName(entry.code)}\` |`;
  });
  const statuses = [...new Set(codes.map((c) => statusName(ERROR_TABLE[c as keyof typeof ERROR_TABLE].code)))].sort();
  return {
    schema: {
      type: "object",
      description:
        "Every refusal: a stable `code`, a human-readable `message` (not for parsing) and the gRPC status name. " +
        "The HTTP status follows from the code; gRPC and Connect carry the same code as `google.rpc.ErrorInfo.reason`.\n\n" +
        "| code | HTTP | status |\n|---|---|---|\n" +
        rows.join("\n"),
      properties: {
        code: { type: "string", enum: codes },
        message: { type: "string" },
        status: { type: "string", enum: statuses },
        details: {
          type: "object",
          additionalProperties: { type: "string" },
          description:
            "Machine-readable detail of some codes (`retry_after_seconds`, `attempts_left`, `locked_until`, `reason`)",
        },
      },
      required: ["code", "message", "status"],
      additionalProperties: false,
    },
    "x-error-codes": Object.fromEntries(
      codes.map((c) => {
        const entry = ERROR_TABLE[c as keyof typeof ERROR_TABLE];
        return [c, { http: entry.http ?? httpStatusOf(entry.code), status: statusName(entry.code) }];
      }),
    ),
  };
}

const protocGenOpenapi = createEcmaScriptPlugin({
  name: "protoc-gen-openapi",
  version: "v1",
  generateTs(schema) {
    const schemas = createSchemas();
    const paths: Record<string, Record<string, unknown>> = {};
    const tags: JsonSchema[] = [];
    for (const file of schema.files) {
      for (const service of file.services) {
        // A tag for each service with REST routes (health and reflection have none).
        const routed = service.methods.filter((m) => m.methodKind === "unary" && hasOption(m, http));
        if (routed.length > 0) tags.push({ name: service.name, ...description(getComments(service).leading) });
        for (const method of routed) {
          const rule = getOption(method, http);
          for (const r of [rule, ...rule.additionalBindings]) {
            const { case: verb, value } = r.pattern;
            if (verb === undefined || verb === "custom")
              throw new Error(`${method.name}: unsupported google.api.http pattern`);
            const path = value.replace(/\{([a-z_][a-z0-9_]*)=\*\}/g, "{$1}");
            (paths[path] ??= {})[verb] = operation(method, verb, value, r.body, schemas);
          }
        }
      }
    }
    // buf runs the plugin once per input; the one without REST routes (google.rpc, grpc) writes nothing.
    if (tags.length === 0) return;
    const errors = errorComponents();
    const doc = {
      openapi: "3.1.0",
      jsonSchemaDialect: "https://json-schema.org/draft/2020-12/schema",
      info: {
        title: "idtoken-signin REST API",
        version: "v1",
        description:
          "REST JSON transcoding of the identity.v1 services (generated from proto/ by scripts/protoc-gen-openapi.ts). " +
          "The same RPCs are served over gRPC, gRPC-Web and Connect on the same port.",
      },
      tags,
      paths: Object.fromEntries(Object.entries(paths).sort(([a], [b]) => a.localeCompare(b))),
      components: {
        schemas: { ...schemas.finish(), Error: errors.schema },
        responses: {
          Error: {
            description: "A refusal with a stable code",
            content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
          },
        },
      },
      "x-error-codes": errors["x-error-codes"],
    };
    const f = schema.generateFile("openapi.json");
    f.print(JSON.stringify(doc, null, 2));
  },
});

runNodeJs(protocGenOpenapi);
