// typescript-eslint reads types through TypeScript's classic JavaScript API, which TypeScript 7 (the
// native compiler this project type-checks with) no longer has; this workspace therefore brings
// typescript@6.0 for it. npm places most of typescript-eslint beside that copy, but hoists
// ts-api-utils (its peer range, ">=4.8.4", admits 7) to the root node_modules, where
// require("typescript") finds 7's API-less stub. This hook answers every "typescript" asked for in
// the linting process with this workspace's copy; it must be imported before typescript-eslint.
import { createRequire, registerHooks } from "node:module";
import { pathToFileURL } from "node:url";

const classic = pathToFileURL(createRequire(import.meta.url).resolve("typescript")).href;

registerHooks({
  resolve(specifier, context, nextResolve) {
    if (specifier === "typescript") return { url: classic, format: "commonjs", shortCircuit: true };
    return nextResolve(specifier, context);
  },
});
