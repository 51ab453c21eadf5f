-- CreateTable
CREATE TABLE "trusted_devices" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "user_id" TEXT NOT NULL,
    "credential_hash" TEXT NOT NULL,
    "label" TEXT,
    "created_at" DATETIME NOT NULL,
    "last_used_at" DATETIME NOT NULL,
    "expires_at" DATETIME NOT NULL,
    CONSTRAINT "trusted_devices_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- RedefineTables
PRAGMA defer_foreign_keys=ON;
PRAGMA foreign_keys=OFF;
CREATE TABLE "new_sessions" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "user_id" TEXT NOT NULL,
    "identity_id" TEXT,
    "provider" TEXT,
    "amr" TEXT NOT NULL DEFAULT '[]',
    "ip" TEXT,
    "user_agent" TEXT,
    "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_used_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expires_at" DATETIME NOT NULL,
    "revoked_at" DATETIME,
    "revoked_reason" TEXT,
    CONSTRAINT "sessions_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);
INSERT INTO "new_sessions" ("amr", "created_at", "expires_at", "id", "identity_id", "ip", "last_used_at", "provider", "revoked_at", "revoked_reason", "user_agent", "user_id") SELECT "amr", "created_at", "expires_at", "id", "identity_id", "ip", "last_used_at", "provider", "revoked_at", "revoked_reason", "user_agent", "user_id" FROM "sessions";
DROP TABLE "sessions";
ALTER TABLE "new_sessions" RENAME TO "sessions";
CREATE INDEX "sessions_user_id_idx" ON "sessions"("user_id");
CREATE INDEX "sessions_expires_at_idx" ON "sessions"("expires_at");
CREATE TABLE "new_mfa_challenges" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "token_hash" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "identity_id" TEXT NOT NULL,
    "provider" TEXT NOT NULL,
    "device_key" TEXT,
    "ip" TEXT,
    "user_agent" TEXT,
    "amr" TEXT NOT NULL,
    "risk" TEXT NOT NULL,
    "context" TEXT NOT NULL,
    "methods" TEXT NOT NULL,
    "pending_identity" TEXT,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expires_at" DATETIME NOT NULL,
    "consumed_at" DATETIME,
    "consumed_reason" TEXT,
    CONSTRAINT "mfa_challenges_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);
INSERT INTO "new_mfa_challenges" ("amr", "attempts", "consumed_at", "consumed_reason", "context", "created_at", "device_key", "expires_at", "id", "identity_id", "ip", "methods", "pending_identity", "provider", "risk", "token_hash", "user_agent", "user_id") SELECT "amr", "attempts", "consumed_at", "consumed_reason", "context", "created_at", "device_key", "expires_at", "id", "identity_id", "ip", "methods", "pending_identity", "provider", "risk", "token_hash", "user_agent", "user_id" FROM "mfa_challenges";
DROP TABLE "mfa_challenges";
ALTER TABLE "new_mfa_challenges" RENAME TO "mfa_challenges";
CREATE UNIQUE INDEX "mfa_challenges_token_hash_key" ON "mfa_challenges"("token_hash");
CREATE INDEX "mfa_challenges_user_id_idx" ON "mfa_challenges"("user_id");
CREATE INDEX "mfa_challenges_expires_at_idx" ON "mfa_challenges"("expires_at");
CREATE TABLE "new_user_devices" (
    "user_id" TEXT NOT NULL,
    "device_key" TEXT NOT NULL,
    "first_seen_at" DATETIME NOT NULL,
    "last_seen_at" DATETIME NOT NULL,

    PRIMARY KEY ("user_id", "device_key"),
    CONSTRAINT "user_devices_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);
INSERT INTO "new_user_devices" ("device_key", "first_seen_at", "last_seen_at", "user_id") SELECT "device_key", "first_seen_at", "last_seen_at", "user_id" FROM "user_devices";
DROP TABLE "user_devices";
ALTER TABLE "new_user_devices" RENAME TO "user_devices";
PRAGMA foreign_keys=ON;
PRAGMA defer_foreign_keys=OFF;

-- CreateIndex
CREATE UNIQUE INDEX "trusted_devices_credential_hash_key" ON "trusted_devices"("credential_hash");

-- CreateIndex
CREATE INDEX "trusted_devices_user_id_idx" ON "trusted_devices"("user_id");

-- CreateIndex
CREATE INDEX "trusted_devices_expires_at_idx" ON "trusted_devices"("expires_at");
