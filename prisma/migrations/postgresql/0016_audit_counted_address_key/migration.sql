-- DropIndex
DROP INDEX "audit_events_address_key_type_at_code_idx";

-- Data: only failures counted against an address keep their key (src/core/address-limit.ts
-- countedAddressKey); the new index and the counts rely on it. Hand-written: a diff writes no data.
UPDATE "audit_events" SET "address_key" = NULL
WHERE "address_key" IS NOT NULL
  AND NOT ("type" IN ('signin.failed', 'mfa.verify_failed', 'mfa.challenge_exhausted')
    AND ("code" IS NULL OR "code" NOT IN ('provider_unavailable', 'unavailable', 'internal', 'rate_limited')));

-- CreateIndex
CREATE INDEX "audit_events_address_key_at_idx" ON "audit_events"("address_key", "at");
