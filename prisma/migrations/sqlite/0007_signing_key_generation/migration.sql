-- AlterTable
ALTER TABLE "signing_keys" ADD COLUMN "generation" INTEGER;

-- CreateIndex
CREATE UNIQUE INDEX "signing_keys_generation_key" ON "signing_keys"("generation");
