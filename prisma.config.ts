import { defineConfig } from "prisma/config";

// Used only by `prisma generate` (see scripts/generate.sh); the service connects through driver
// adapters and applies migrations itself.
export default defineConfig({
  schema: "prisma/schema.prisma",
});
