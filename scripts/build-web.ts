/**
 * Builds the web app (web/) into gen/web/, which is committed like the rest of gen/ so that
 * `npm ci && npm start` serves it with nothing to build; `npm run generate` runs this and CI fails
 * when the committed files differ from a fresh build.
 *
 *   gen/web/index.html         web/index.html with the asset names filled in
 *   gen/web/app-<hash>.js      web/main.ts and everything it imports, one minified IIFE (rolldown)
 *   gen/web/style-<hash>.css   web/style.css
 *
 * Asset names carry a hash of their content, so the server may let browsers cache them for good
 * while index.html is revalidated on every load.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { rolldown } from "rolldown";

const root = fileURLToPath(new URL("..", import.meta.url));
const source = (name: string) => `${root}web/${name}`;
const out = `${root}gen/web/`;

function hashed(base: string, ext: string, content: string): string {
  return `${base}-${createHash("sha256").update(content).digest("hex").slice(0, 12)}.${ext}`;
}

const bundle = await rolldown({ input: source("main.ts"), platform: "browser", logLevel: "warn" });
let script: string;
try {
  const { output } = await bundle.generate({ format: "iife", minify: true });
  script = output[0].code;
} finally {
  await bundle.close();
}
const style = readFileSync(source("style.css"), "utf8");
const scriptName = hashed("app", "js", script);
const styleName = hashed("style", "css", style);

const template = readFileSync(source("index.html"), "utf8");
for (const slot of ["{{app.js}}", "{{style.css}}"]) {
  if (template.split(slot).length !== 2) throw new Error(`web/index.html must name ${slot} exactly once`);
}
const html = template.replace("{{app.js}}", `/web/${scriptName}`).replace("{{style.css}}", `/web/${styleName}`);

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
writeFileSync(`${out}index.html`, html);
writeFileSync(`${out}${scriptName}`, script);
writeFileSync(`${out}${styleName}`, style);
