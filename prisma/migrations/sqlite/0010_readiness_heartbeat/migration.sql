-- CreateTable
CREATE TABLE "heartbeats" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "at" DATETIME NOT NULL
);
