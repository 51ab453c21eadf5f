-- DropIndex
DROP INDEX "audit_events_ip_type_at_idx";

-- CreateTable
CREATE TABLE "used_id_tokens" (
    "key" TEXT NOT NULL,
    "expires_at" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "used_id_tokens_pkey" PRIMARY KEY ("key")
);

-- CreateTable
CREATE TABLE "heartbeats" (
    "id" TEXT NOT NULL,
    "at" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "heartbeats_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "audit_events_ip_type_at_code_idx" ON "audit_events"("ip", "type", "at", "code");
