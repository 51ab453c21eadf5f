-- DropIndex
DROP INDEX "audit_events_ip_type_at_idx";

-- CreateTable
CREATE TABLE "used_id_tokens" (
    "key" TEXT NOT NULL PRIMARY KEY,
    "expires_at" DATETIME NOT NULL
);

-- CreateIndex
CREATE INDEX "used_id_tokens_expires_at_idx" ON "used_id_tokens"("expires_at");

-- CreateIndex
CREATE INDEX "audit_events_ip_type_at_code_idx" ON "audit_events"("ip", "type", "at", "code");
