import {
  type DescMessage,
  type DescMethod,
  type DescService,
  getOption,
  hasOption,
  type JsonValue,
  ScalarType,
} from "@bufbuild/protobuf";
import { http } from "../../gen/pb/google/api/annotations_pb.ts";
import type { HttpRule } from "../../gen/pb/google/api/http_pb.ts";

export type HttpMethod = "GET" | "POST" | "PUT" | "DELETE" | "PATCH";

/** One REST route, derived from a method's `google.api.http` option. */
export interface RestRoute {
  httpMethod: HttpMethod;
  template: string;
  /** `*` (whole body is the request), a field name, or "" (no body). */
  body: string;
  method: DescMethod;
  match(path: string): Record<string, string> | null;
}

/**
 * The REST route table, built from the descriptors at start-up: every RPC annotated with
 * `google.api.http` gets its route, so a new annotated RPC is reachable over REST for free.
 * Supported templates: literal segments and single-segment variables (`{name}` / `{name=*}`);
 * anything else fails at start-up rather than routing wrongly.
 */
export function restRoutesFrom(services: readonly DescService[]): RestRoute[] {
  const routes: RestRoute[] = [];
  for (const service of services) {
    for (const method of service.methods) {
      if (method.methodKind !== "unary" || !hasOption(method, http)) continue;
      const rule = getOption(method, http);
      for (const r of [rule, ...rule.additionalBindings]) routes.push(routeOf(method, r));
    }
  }
  const seen = new Set<string>();
  for (const r of routes) {
    const key = `${r.httpMethod} ${r.template.replace(/\{[^}]+\}/g, "{}")}`;
    if (seen.has(key)) throw new Error(`two RPCs claim the REST route ${key}`);
    seen.add(key);
  }
  return routes;
}

function routeOf(method: DescMethod, rule: HttpRule): RestRoute {
  const where = `${method.parent.typeName}.${method.name}`;
  const { case: verb, value } = rule.pattern;
  if (verb === undefined || verb === "custom") throw new Error(`${where}: unsupported google.api.http pattern`);
  const template = value;
  if (!template.startsWith("/")) throw new Error(`${where}: path template must start with /`);
  const vars: string[] = [];
  const source = template
    .split("/")
    .slice(1)
    .map((segment) => {
      const v = /^\{([a-z_][a-z0-9_]*)(?:=\*)?\}$/.exec(segment);
      if (v !== null) {
        const field = method.input.fields.find((f) => f.name === v[1]);
        if (field === undefined || field.fieldKind !== "scalar") {
          throw new Error(`${where}: path variable {${v[1]}} is not a scalar field of ${method.input.typeName}`);
        }
        vars.push(v[1]!);
        return "([^/]+)";
      }
      if (!/^[A-Za-z0-9._~-]+$/.test(segment)) throw new Error(`${where}: unsupported path segment "${segment}"`);
      return segment.replace(/\./g, "\\.");
    })
    .join("/");
  const pattern = new RegExp(`^/${source}$`);
  const body = rule.body;
  if (body !== "" && body !== "*" && !method.input.fields.some((f) => f.name === body)) {
    throw new Error(`${where}: body field "${body}" is not a field of ${method.input.typeName}`);
  }
  return {
    httpMethod: verb.toUpperCase() as HttpMethod,
    template,
    body,
    method,
    match(path) {
      const m = pattern.exec(path);
      if (m === null) return null;
      const params: Record<string, string> = {};
      try {
        vars.forEach((name, i) => {
          params[name] = decodeURIComponent(m[i + 1]!);
        });
      } catch {
        return null; // A malformed %-escape matches no route (404), never a 500.
      }
      return params;
    },
  };
}

/**
 * A query parameter's text as the JSON value of the request field it names. Protobuf JSON takes
 * integers as strings already, but not booleans, so `?force=true` becomes `true`; anything else
 * stays text and the message decoder judges it (a bad value is `invalid_request`).
 */
export function queryParamValue(input: DescMessage, name: string, text: string): JsonValue {
  const field = input.fields.find((f) => f.name === name || f.jsonName === name);
  if (field?.fieldKind === "scalar" && field.scalar === ScalarType.BOOL && (text === "true" || text === "false"))
    return text === "true";
  return text;
}
