// ESLint's flat config lives in tools/lint/ (the workspace that holds ESLint, typescript-eslint and
// the TypeScript 6 they need); this file is where ESLint and editors look for it.
export { default } from "./tools/lint/eslint.config.js";
