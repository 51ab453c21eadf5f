-- AlterTable
ALTER TABLE "webauthn_ceremonies" ADD COLUMN     "session_id" TEXT;

-- CreateIndex
CREATE INDEX "webauthn_ceremonies_session_id_idx" ON "webauthn_ceremonies"("session_id");
