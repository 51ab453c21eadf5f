-- AlterTable
ALTER TABLE "sessions" ADD COLUMN     "auth_time" TIMESTAMP(3),
ADD COLUMN     "mfa_at" TIMESTAMP(3);
