import { readdirSync, readFileSync } from "node:fs";
import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import type { PlainHandler } from "./http-handler.ts";

/** Where `npm run generate` writes the built web app (web/ -> scripts/build-web.ts). */
const WEB_DIR = fileURLToPath(new URL("../../gen/web/", import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
};

/**
 * The page may run only its own script and style and talk only to this origin; no inline code,
 * no plugins, no framing (clickjacking), no form posts elsewhere. The QR code is an SVG the
 * script builds, so no image source is needed beyond the empty `data:` favicon.
 */
export const WEB_APP_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const COMMON_HEADERS = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/**
 * The routes of the web app (`GET /` and `GET /web/<asset>`), read once from gen/web/. Asset
 * names carry a hash of their content, so browsers may keep them for a year; the page itself is
 * revalidated on every load so a new build is picked up at once. With `devIssuer` the page shows
 * the panel that mints ID tokens through the dev issuer; without it, it explains that a real app
 * gets the ID token from its provider.
 */
export function webAppRoutes(options: { devIssuer: boolean; dir?: string }): Map<string, PlainHandler> {
  const dir = options.dir ?? WEB_DIR;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    throw new Error(`the web app is not built (${dir} is missing): run \`npm run generate\``);
  }
  const routes = new Map<string, PlainHandler>();
  for (const name of names) {
    const type = CONTENT_TYPES[extname(name)];
    if (type === undefined) continue;
    const text = readFileSync(`${dir}${name}`, "utf8");
    const headers = {
      ...COMMON_HEADERS,
      "content-type": type,
      "content-length": String(Buffer.byteLength(text)),
      "cache-control": "public, max-age=31536000, immutable",
    };
    routes.set(`GET /web/${name}`, async () => ({ status: 200, text, headers }));
  }
  const template = readFileSync(`${dir}index.html`, "utf8");
  const off = 'data-dev-issuer="off"';
  if (template.split(off).length !== 2) throw new Error(`${dir}index.html must carry ${off} once`);
  const html = options.devIssuer ? template.replace(off, 'data-dev-issuer="on"') : template;
  const headers = {
    ...COMMON_HEADERS,
    "content-type": "text/html; charset=utf-8",
    "content-length": String(Buffer.byteLength(html)),
    "cache-control": "no-cache",
    "content-security-policy": WEB_APP_CSP,
  };
  routes.set("GET /", async () => ({ status: 200, text: html, headers }));
  return routes;
}
