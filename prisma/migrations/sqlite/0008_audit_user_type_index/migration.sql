-- CreateIndex
CREATE INDEX "audit_events_user_id_type_at_idx" ON "audit_events"("user_id", "type", "at");
