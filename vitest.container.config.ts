import { defineConfig } from "vitest/config";

/** `npm run test:container` (through .ci/container.sh, which builds the image first). */
export default defineConfig({
  test: {
    include: ["test/container/**/*.test.ts"],
    // Each container start copies the image (vfs storage) and boots node: minutes, not seconds.
    testTimeout: 120_000,
    hookTimeout: 240_000,
    pool: "forks",
    reporters: ["default"],
  },
});
