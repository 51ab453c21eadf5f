/**
 * Writes the client package's entry (clients/ts/index.js and index.d.ts) from the service list
 * (src/app/services.ts): one export line per file of a registered service, then the files every
 * client needs besides (rpc/routes.ts SUPPORT_FILES: google.rpc.ErrorInfo). `npm run generate`
 * runs this; test/unit/client-index.test.ts fails when the committed entry differs from it.
 */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { SERVICE_MODULES } from "../src/app/services.ts";
import { SUPPORT_FILES } from "../src/rpc/routes.ts";

const HEADERS = {
  "index.js": [
    "// The package's entry: every service and message of identity.v1, and google.rpc.ErrorInfo (the",
    "// stable error code rides in it). Compiled from the repository's gen/pb at `npm pack` (prepack).",
  ],
  "index.d.ts": ["// Types of the package's entry (index.js)."],
};
const GENERATED = "// Generated from src/app/services.ts by scripts/generate-client-index.ts (npm run generate).";

/** The entry's files by name, as they are to be committed. */
export function clientIndex(): Record<keyof typeof HEADERS, string> {
  const files = [...new Set([...SERVICE_MODULES.map((m) => m.service.file.name), ...SUPPORT_FILES.map((f) => f.name)])];
  const exports = files.map((name) => `export * from "./dist/${name}_pb.js";`);
  const render = (header: string[]) => [...header, GENERATED, ...exports, ""].join("\n");
  return { "index.js": render(HEADERS["index.js"]), "index.d.ts": render(HEADERS["index.d.ts"]) };
}

if (import.meta.main) {
  const dir = fileURLToPath(new URL("../clients/ts/", import.meta.url));
  for (const [name, text] of Object.entries(clientIndex())) writeFileSync(`${dir}${name}`, text);
}
