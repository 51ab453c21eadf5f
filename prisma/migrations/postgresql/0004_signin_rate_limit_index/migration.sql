-- CreateIndex
CREATE INDEX "audit_events_ip_type_at_idx" ON "audit_events"("ip", "type", "at");
