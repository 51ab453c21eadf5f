-- AlterTable
ALTER TABLE "sessions" ADD COLUMN "client_id" TEXT;

-- AlterTable
ALTER TABLE "mfa_challenges" ADD COLUMN "client_id" TEXT;
