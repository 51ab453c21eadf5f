/**
 * The OpenAPI document: generated from proto/ at `npm run generate`, served at
 * GET /openapi.json, naming every route the server answers, and describing real answers exactly:
 * a sign-in response and an error body validate against its schemas (ajv, JSON Schema 2020-12,
 * the dialect OpenAPI 3.1 uses), with no field left undocumented.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.ts";
import { devIdToken, restSignin, uniqueSub } from "../support/signin-e2e.ts";

interface OpenApi {
  openapi: string;
  servers: { url: string }[];
  tags: { name: string; description?: string }[];
  paths: Record<
    string,
    Record<
      string,
      {
        responses: Record<string, unknown>;
        parameters?: { name: string; in: string }[];
        summary?: string;
        description?: string;
        tags?: string[];
      }
    >
  >;
  components: { schemas: Record<string, unknown> };
  "x-error-codes": Record<string, { http: number; status: string }>;
}

describe("OpenAPI document", () => {
  let t: TestApp;
  let doc: OpenApi;
  let res: Response;
  const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
  /** Validates `value` against the document's schema at `ref` (a component or a response). */
  const validate = (ref: string, value: unknown) => {
    const check = ajv.compile({ $ref: ref, components: doc.components, paths: doc.paths });
    if (!check(value)) throw new Error(`${ref}: ${ajv.errorsText(check.errors)}\n${JSON.stringify(value)}`);
  };
  const responseSchemaRef = (method: string, path: string) =>
    `#/paths/${path.replace(/~/g, "~0").replace(/\//g, "~1")}/${method}/responses/200/content/application~1json/schema`;

  beforeAll(async () => {
    t = await startTestApp({ config: { dev: true } });
    res = await fetch(`${t.url}/openapi.json`);
    doc = (await res.json()) as OpenApi;
  });
  afterAll(() => t.close());

  it("is OpenAPI 3.1, cacheable, with the service's public URL as server", () => {
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(res.headers.get("cache-control")).toBe("public, max-age=300");
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.servers).toEqual([{ url: t.url }]);
  });

  it("names every API route the server answers, with the path parameters of its template; no web page or asset", () => {
    expect(t.app.routes.length).toBeGreaterThan(20);
    const isWebApp = (route: string) => route === "GET /" || route.startsWith("GET /web/");
    expect(t.app.routes.filter(isWebApp).length).toBeGreaterThan(1); // the web app is served…
    for (const route of t.app.routes.filter((r) => !isWebApp(r))) {
      const [method, path] = route.split(" ") as [string, string];
      const op = doc.paths[path]?.[method.toLowerCase()];
      expect(op, route).toBeDefined();
      const vars = [...path.matchAll(/\{([^}=]+)/g)].map((m) => m[1]);
      expect(op!.parameters?.filter((p) => p.in === "path").map((p) => p.name) ?? [], route).toEqual(vars);
    }
    // …but is not API: no page, no hashed asset (web/app-3f2a….js) in the document.
    for (const path of Object.keys(doc.paths)) {
      expect(path === "/" || path.startsWith("/web/"), path).toBe(false);
      expect(path, path).not.toMatch(/[-.][0-9a-z_-]{8,}\.(js|css|map|svg|png|ico)$/i);
    }
    // …and nothing the server does not answer.
    const served = new Set(t.app.routes);
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const method of Object.keys(ops))
        expect(served.has(`${method.toUpperCase()} ${path}`), `${method} ${path}`).toBe(true);
    }
  });

  it("describes every operation with a summary and a description of its own, and tags that name what serves it", () => {
    const summaries = new Set<string>();
    const tagNames = new Set(doc.tags.map((tag) => tag.name));
    expect(doc.tags.length).toBe(tagNames.size); // each once
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const where = `${method} ${path}`;
        expect(op.summary, where).toEqual(expect.any(String));
        expect(op.summary!.length, where).toBeGreaterThan(8);
        // The old placeholder named the path in its own summary ("/healthz: served beside the API").
        expect(op.summary, where).not.toContain(path);
        expect(op.summary, where).not.toMatch(/served beside the API|not an RPC/i);
        expect(op.description ?? "", where).not.toBe("");
        expect(summaries.has(op.summary!), `${where}: summary "${op.summary}" is not its own`).toBe(false);
        summaries.add(op.summary!);
        expect(Object.keys(op.responses).length, where).toBeGreaterThan(0);
        for (const tag of op.tags ?? []) expect(tagNames.has(tag), `${where}: tag ${tag}`).toBe(true);
      }
    }
    for (const tag of doc.tags) expect(tag.description, tag.name).toEqual(expect.any(String));
    // Dev mode: the dev issuer's routes, described.
    expect(doc.paths["/dev/oidc/token"]?.["post"]?.summary).toBe("Mint a test ID token (dev mode only)");
    expect(tagNames.has("Development")).toBe(true);
  });

  it("outside dev mode: no dev issuer route and no Development tag", async () => {
    const prod = await startTestApp({ config: {} });
    try {
      const served = (await (await fetch(`${prod.url}/openapi.json`)).json()) as OpenApi;
      expect(Object.keys(served.paths).filter((p) => p.startsWith("/dev/"))).toEqual([]);
      expect(served.tags.map((tag) => tag.name)).not.toContain("Development");
      expect(served.paths["/healthz"]?.["get"]?.summary).toBe("Liveness: the process is up");
      expect(Object.keys(served.paths).length).toBe(Object.keys(doc.paths).length - 3);
    } finally {
      await prod.close();
    }
  });

  it("resolves every $ref, and takes any request field as optional (proto3), an empty body too", () => {
    const refs: string[] = [];
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (typeof v === "object" && v !== null) {
        for (const [k, x] of Object.entries(v)) {
          if (k === "$ref" && typeof x === "string") refs.push(x);
          else walk(x);
        }
      }
    };
    walk(doc);
    expect(refs.length).toBeGreaterThan(20);
    for (const ref of new Set(refs)) {
      const target = ref
        .slice(2)
        .split("/")
        .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"))
        .reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], doc);
      expect(target, ref).toBeDefined();
    }
    const requestSchema = (method: string, path: string) =>
      `#/paths/${path.replace(/\//g, "~1")}/${method}/requestBody/content/application~1json/schema`;
    validate(requestSchema("post", "/auth/signout"), {});
    validate(requestSchema("post", "/auth/id-token/signin"), { id_token: "x" });
    expect(() => validate(requestSchema("post", "/auth/id-token/signin"), { id_token: "x", extra: 1 })).toThrow();
  });

  it("describes a real sign-in answer and GET /auth/me exactly (snake_case, no undocumented field)", async () => {
    const signin = await restSignin(t.url, {
      id_token: await devIdToken(t.url, uniqueSub("openapi"), { email: "o@example.com" }),
      provider: "dev",
    });
    expect(signin.status).toBe(200);
    validate(responseSchemaRef("post", "/auth/id-token/signin"), signin.body);
    // A field the document does not know fails validation: the schemas are closed.
    expect(() =>
      validate(responseSchemaRef("post", "/auth/id-token/signin"), { ...signin.body, accessToken: "x" }),
    ).toThrow();
    expect(() =>
      validate(responseSchemaRef("post", "/auth/id-token/signin"), { ...signin.body, requires_mfa: undefined }),
    ).toThrow();

    const me = await fetch(`${t.url}/auth/me`, {
      headers: { authorization: `Bearer ${String(signin.body["access_token"])}` },
    });
    expect(me.status).toBe(200);
    validate(responseSchemaRef("get", "/auth/me"), await me.json());
  });

  it("describes the error body, and each code's HTTP status is the one the server answers", async () => {
    const refused = await restSignin(t.url, { id_token: "not-a-jwt", provider: "dev" });
    validate("#/components/schemas/Error", refused.body);
    const code = String(refused.body["code"]);
    expect(doc["x-error-codes"][code]).toEqual({ http: refused.status, status: refused.body["status"] });

    const unknownProvider = await restSignin(t.url, { id_token: "a.b.c", provider: "nope" });
    validate("#/components/schemas/Error", unknownProvider.body);
    expect(doc["x-error-codes"][String(unknownProvider.body["code"])]?.http).toBe(unknownProvider.status);
    expect(() => validate("#/components/schemas/Error", { ...refused.body, code: "no_such_code" })).toThrow();
  });
});
