// The linter's configuration (`npm run lint`; the repository's eslint.config.js points here). ESLint's
// recommended rules and typescript-eslint's type-checked ones, read with the real type checker
// (`projectService` finds tsconfig.json, and web/tsconfig.json for the browser app). Formatting is
// Prettier's alone: eslint-config-prettier, last, turns off every rule that would disagree with it.
import "./classic-typescript.js"; // first: typescript-eslint must find TypeScript 6 (see that file)
import js from "@eslint/js";
import { defineConfig } from "eslint/config";
import prettier from "eslint-config-prettier/flat";
import globals from "globals";
import tseslint from "typescript-eslint";

export default defineConfig(
  {
    // Generated or built, never edited by hand (gen/ is checked by `npm run generate` in CI instead).
    ignores: [
      "gen/**",
      "clients/ts/dist/**",
      "prisma/migrations/**",
      "**/node_modules/**",
      "coverage/**",
      "test-output/**",
      "bench/results/**",
      "data/**",
    ],
  },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        // The few JavaScript files outside every tsconfig (this configuration, the client package's entry).
        projectService: { allowDefaultProject: ["*.js", "tools/lint/*.js", "clients/ts/*.js", "clients/ts/*.d.ts"] },
        tsconfigRootDir: new URL("../../", import.meta.url).pathname,
      },
      globals: { ...globals.node },
    },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      // The two this linter is here for: a promise nobody awaits loses its rejection (in a server, an
      // unhandled rejection or a silently skipped step), and an async function handed to a caller that
      // expects a plain callback (an event emitter, a timer, a forEach) drops its promise the same way.
      // Fire-and-forget is written `void p` with a comment saying who handles the rejection.
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",

      // `_`-named bindings are deliberately unused (a parameter a port's signature requires, a field
      // destructured away so that the rest can be passed on).
      "@typescript-eslint/no-unused-vars": [
        "error",
        {
          argsIgnorePattern: "^_",
          varsIgnorePattern: "^_",
          caughtErrorsIgnorePattern: "^_",
          destructuredArrayIgnorePattern: "^_",
          ignoreRestSiblings: true,
        },
      ],
      // Passing on a caught value as the rejection (`Promise.reject(e)`, `reject(e)`) is a rethrow, not a
      // string thrown by mistake.
      "@typescript-eslint/prefer-promise-reject-errors": [
        "error",
        { allowThrowingAny: true, allowThrowingUnknown: true },
      ],

      // Off, each because it forces churn without finding bugs here:
      // - require-await: an `async` function without `await` implements a port that returns a promise;
      //   dropping `async` would turn its thrown errors into synchronous throws, a change of behaviour.
      "@typescript-eslint/require-await": "off",
      // - unbound-method: the code builds its objects from closures (`create*` factories), not classes
      //   whose methods use `this`; the rule cannot tell and flags every hand-over of such a function.
      "@typescript-eslint/unbound-method": "off",
      // - no-base-to-string, restrict-template-expressions: every hit was an `unknown` stringified on
      //   purpose (a driver's error code, a claim, a form field), where "[object Object]" is harmless.
      "@typescript-eslint/no-base-to-string": "off",
      "@typescript-eslint/restrict-template-expressions": "off",
      // - no-unnecessary-type-assertion: an assertion that changes nothing is dead weight, not a bug
      //   (most hits were `child.stdout!` where the spawn options already make it non-null).
      "@typescript-eslint/no-unnecessary-type-assertion": "off",
    },
  },
  {
    // Tests and the benchmark read JSON answers, YAML manifests and raw frames as `any` and assert on
    // them; typing every such read would add casts, not checks.
    files: ["test/**", "bench/**"],
    rules: {
      "@typescript-eslint/no-unsafe-argument": "off",
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-call": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-unsafe-return": "off",
    },
  },
  {
    files: ["web/**"],
    languageOptions: { globals: { ...globals.browser } },
  },
  prettier,
);
