import { configDefaults, defineConfig } from "vitest/config";
import { SkipReport } from "./test/support/skips.ts";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Needs podman and a built image: npm run test:container (its own CI step).
    exclude: [...configDefaults.exclude, "test/container/**"],
    // Real servers, databases and an OpenID provider: generous but bounded timeouts.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    // SkipReport: the last line names what was skipped and how to run it (test/support/skips.ts).
    reporters: ["default", new SkipReport()],
  },
});
