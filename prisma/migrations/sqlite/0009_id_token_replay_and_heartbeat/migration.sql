-- DropIndex
DROP INDEX "audit_events_ip_type_at_idx";

-- CreateTable
CREATE TABLE "used_id_tokens" (
    "key" TEXT NOT NULL PRIMARY KEY,
    "expires_at" DATETIME NOT NULL
);

-- CreateTable
CREATE TABLE "heartbeats" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "at" DATETIME NOT NULL
);

-- CreateIndex
CREATE INDEX "audit_events_ip_type_at_code_idx" ON "audit_events"("ip", "type", "at", "code");
