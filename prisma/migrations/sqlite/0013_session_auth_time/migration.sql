-- AlterTable
ALTER TABLE "sessions" ADD COLUMN "auth_time" DATETIME;
ALTER TABLE "sessions" ADD COLUMN "mfa_at" DATETIME;
