import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { clientIndex } from "../../scripts/generate-client-index.ts";
import { SERVICE_MODULES } from "../../src/app/services.ts";

const dir = resolve(import.meta.dirname, "../../clients/ts");

describe("the client package's entry (clients/ts/index.js, index.d.ts)", () => {
  it("is what scripts/generate-client-index.ts writes from the service list (else: npm run generate)", () => {
    for (const [name, text] of Object.entries(clientIndex())) {
      expect(readFileSync(resolve(dir, name), "utf8"), `clients/ts/${name}`).toBe(text);
    }
  });

  it("exports the file of every registered service, and google.rpc.ErrorInfo's", () => {
    const { "index.js": js, "index.d.ts": dts } = clientIndex();
    for (const { service } of SERVICE_MODULES) {
      expect(js).toContain(`export * from "./dist/${service.file.name}_pb.js";`);
      expect(dts).toContain(`export * from "./dist/${service.file.name}_pb.js";`);
    }
    expect(js).toContain(`export * from "./dist/google/rpc/error_details_pb.js";`);
  });
});
