-- DropIndex
DROP INDEX "audit_events_user_id_type_at_idx";

-- AlterTable
ALTER TABLE "audit_events" ADD COLUMN     "counted_user_id" TEXT;

-- Data: failures a per-user count reads carry their user as the key (src/store/user-failures.ts
-- countedUserId: USER_COUNTED_TYPES); the new index and the counts rely on it. Hand-written: a diff
-- writes no data.
UPDATE "audit_events" SET "counted_user_id" = "user_id"
WHERE "user_id" IS NOT NULL
  AND "type" IN ('signin.failed', 'mfa.verify_failed', 'mfa.challenge_exhausted', 'mfa.code_failed', 'password.change_failed');

-- CreateIndex
CREATE INDEX "audit_events_counted_user_id_type_at_idx" ON "audit_events"("counted_user_id", "type", "at");
