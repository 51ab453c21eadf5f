-- DropIndex
DROP INDEX "audit_events_ip_type_at_code_idx";

-- AlterTable
ALTER TABLE "audit_events" ADD COLUMN "address_key" TEXT;

-- CreateIndex
CREATE INDEX "audit_events_address_key_type_at_code_idx" ON "audit_events"("address_key", "type", "at", "code");
