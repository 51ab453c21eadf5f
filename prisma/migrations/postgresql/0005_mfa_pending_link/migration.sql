-- AlterTable
ALTER TABLE "mfa_challenges" ADD COLUMN     "pending_identity" TEXT;
