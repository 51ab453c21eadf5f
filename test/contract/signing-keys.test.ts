import { describe, expect, it } from "vitest";
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from "jose";
import * as http from "node:http";
import type { Clock } from "../../src/core/clock.ts";
import { DomainError } from "../../src/core/errors.ts";
import { type Database, openDatabase } from "../../src/store/database.ts";
import { createSigningKeyStore } from "../../src/store/signing-key-store.ts";
import { createLocalKeyRing, SigningKeyUnreadableError } from "../../src/tokens/access-tokens.ts";
import { createKeyEncryption } from "../../src/tokens/key-encryption.ts";
import { openMigratedDatabase, testDatabaseKinds, useMigratedDatabase } from "../support/databases.ts";

const claims = {
  userId: "usr_1",
  sessionId: "ses_1",
  amr: ["fed"],
  provider: "op",
  authTime: new Date("2026-01-01T00:00:00Z"),
};

for (const kind of testDatabaseKinds()) {
  describe(`signing keys on ${kind.dialect}`, kind.suiteOptions, () => {
    const db = useMigratedDatabase(kind);
    let now = new Date("2026-05-01T00:00:00Z");
    const clock: Clock = { now: () => now };
    const ring = (
      kek = Buffer.alloc(32, 9),
      rotateAfterSeconds: number | null = null,
      onUnreadable: "fail" | "replace" = "fail",
    ) =>
      createLocalKeyRing({
        onUnreadable,
        issuer: "https://identity.test",
        audience: ["identity"],
        ttlSeconds: 1800,
        store: createSigningKeyStore(db().client),
        encryption: createKeyEncryption(kek),
        clock,
        rotateAfterSeconds,
      });

    it("persist across restarts, stored encrypted, and sign ES256 at+jwt tokens with kid", async () => {
      const a = await ring();
      const b = await ring(); // a restart or another replica: same key
      expect(b.activeKid()).toBe(a.activeKid());
      const row = await db().client.signingKey.findUniqueOrThrow({ where: { kid: a.activeKid() } });
      expect(row.privateKeyEnc).toMatch(/^v1\./);
      expect(row.privateKeyEnc).not.toContain("PRIVATE");
      const token = await a.issue(claims, now);
      expect(decodeProtectedHeader(token)).toMatchObject({ alg: "ES256", typ: "at+jwt", kid: a.activeKid() });
      // OIDC auth_time (seconds) and RFC 8176 amr travel in the token.
      expect(decodeJwt(token)).toMatchObject({ auth_time: 1_767_225_600, amr: ["fed"] });
      expect(await b.verify(token, now)).toMatchObject({ userId: "usr_1", sessionId: "ses_1" });
    });

    it("under another KEK: refuse naming the key, or (replace) seal a new one and keep the old one published", async () => {
      const a = await ring();
      const token = await a.issue(claims, now);
      const otherKek = Buffer.alloc(32, 3);
      const refused = await ring(otherKek).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(SigningKeyUnreadableError);
      expect((refused as SigningKeyUnreadableError).kid).toBe(a.activeKid());
      const replaced = await ring(otherKek, null, "replace");
      expect(replaced.replacedUnreadable()).toEqual([a.activeKid()]);
      expect(replaced.activeKid()).not.toBe(a.activeKid());
      expect(replaced.jwks().keys.map((k) => k.kid)).toContain(a.activeKid());
      expect(await replaced.verify(token, now)).toMatchObject({ userId: "usr_1" });
      // Now the old KEK is the one that cannot open the active key.
      expect(await ring().catch((e: unknown) => e)).toBeInstanceOf(SigningKeyUnreadableError);
      await ring(Buffer.alloc(32, 9), null, "replace"); // back to the suite's KEK for the tests after this one
    });

    it("list usable keys by generation (not by clock), without expired ones", async () => {
      const fresh = await openMigratedDatabase(kind, { poolSize: 2 });
      try {
        const keys = createSigningKeyStore(fresh.db.client);
        const base = { alg: "ES256", publicJwk: "{}", privateKeyEnc: "x", retiredAt: null };
        expect(
          await keys.insertNext(
            {
              ...base,
              kid: "k-old",
              createdAt: new Date("2026-01-01T00:00:00Z"),
              expiresAt: new Date("2026-01-02T00:00:00Z"),
            },
            0,
          ),
        ).toBe(true);
        expect(
          await keys.insertNext(
            { ...base, kid: "k-1", createdAt: new Date("2026-01-05T00:00:00Z"), expiresAt: null },
            1,
          ),
        ).toBe(true);
        // Two writers from the same view: the second loses.
        expect(
          await keys.insertNext(
            { ...base, kid: "k-1b", createdAt: new Date("2026-01-05T00:00:00Z"), expiresAt: null },
            1,
          ),
        ).toBe(false);
        // A replica whose clock is behind creates the next key: it is still the newest.
        expect(
          await keys.insertNext(
            { ...base, kid: "k-2", createdAt: new Date("2026-01-04T00:00:00Z"), expiresAt: null },
            2,
          ),
        ).toBe(true);
        expect((await keys.listUsable(new Date("2026-01-06T00:00:00Z"))).map((k) => k.kid)).toEqual(["k-2", "k-1"]);
      } finally {
        await fresh.close();
      }
    });

    it("replicas starting together on an empty database, or rotating together, agree on one signing key", async () => {
      const fresh = await openMigratedDatabase(kind, { poolSize: 2 });
      const others = await Promise.all(
        [1, 2].map(() =>
          openDatabase({ url: fresh.url, poolSize: 2, connectTimeoutMs: 5000, statementTimeoutMs: 5000 }),
        ),
      );
      const dbs = [fresh.db, ...others];
      try {
        const ringOn = (d: Database) =>
          createLocalKeyRing({
            issuer: "https://identity.test",
            audience: ["identity"],
            ttlSeconds: 1800,
            store: createSigningKeyStore(d.client),
            encryption: createKeyEncryption(Buffer.alloc(32, 9)),
            clock,
          });
        const rings = await Promise.all(dbs.map(ringOn));
        await Promise.all(rings.map((r) => r.reload()));
        expect(new Set(rings.map((r) => r.activeKid())).size).toBe(1);
        expect(rings[0]!.jwks().keys).toHaveLength(1);

        await Promise.all(rings.map((r) => r.rotate()));
        await Promise.all(rings.map((r) => r.reload()));
        expect(new Set(rings.map((r) => r.activeKid())).size).toBe(1);
        // Exactly one key signs; every other one is retired (and leaves the JWKS when its tokens expired).
        const unretired = await dbs[0]!.client.signingKey.count({ where: { retiredAt: null } });
        expect(unretired).toBe(1);
      } finally {
        await Promise.all(others.map((d) => d.close()));
        await fresh.close();
      }
    });

    it("refuse to open with another key-encryption key", async () => {
      await expect(ring(Buffer.alloc(32, 8))).rejects.toThrow();
    });

    it("rotate: old and new tokens both verify, on this and on another replica; JWKS keeps the retired key until its tokens expired", async () => {
      const a = await ring();
      const other = await ring();
      const oldKid = a.activeKid();
      const oldToken = await a.issue(claims, now);
      const newKid = await a.rotate();
      expect(newKid).not.toBe(oldKid);
      const newToken = await a.issue(claims, now);
      expect(decodeProtectedHeader(newToken).kid).toBe(newKid);
      expect(a.jwks().keys.map((k) => k.kid)).toEqual(expect.arrayContaining([oldKid, newKid]));
      // The other replica has not reloaded: an unknown kid makes it reload once.
      expect((await other.verify(newToken, now)).userId).toBe("usr_1");
      expect((await other.verify(oldToken, now)).userId).toBe("usr_1");

      // A microservice verifying with the JWKS URL, as the README shows.
      const server = http.createServer((_req, res) => res.end(JSON.stringify(a.jwks())));
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      const jwks = createRemoteJWKSet(new URL(`http://127.0.0.1:${(server.address() as { port: number }).port}/`));
      for (const t of [oldToken, newToken]) {
        const { payload } = await jwtVerify(t, jwks, {
          issuer: "https://identity.test",
          audience: "identity",
          currentDate: now,
        });
        expect(payload.sub).toBe("usr_1");
      }
      server.close();

      // After every token of the old key expired (ttl + margin), it leaves the JWKS.
      now = new Date(now.getTime() + (1800 + 301) * 1000);
      await a.reload();
      expect(a.jwks().keys.map((k) => k.kid)).not.toContain(oldKid);
      const err = await a.verify(oldToken, now).catch((e: unknown) => e);
      expect((err as DomainError).code).toMatch(/^access_token_(expired|invalid)$/);
    });

    it("rotate on schedule at upkeep", async () => {
      const a = await ring(undefined, 3600);
      const kid = a.activeKid();
      await a.tick();
      expect(a.activeKid()).toBe(kid);
      now = new Date(now.getTime() + 3601 * 1000);
      await a.tick();
      expect(a.activeKid()).not.toBe(kid);
    });

    it("refuse tokens that are expired, for another audience, or not ours", async () => {
      const a = await ring();
      const token = await a.issue(claims, now);
      const later = new Date(now.getTime() + 1900 * 1000);
      expect(((await a.verify(token, later).catch((e: unknown) => e)) as DomainError).code).toBe(
        "access_token_expired",
      );
      const tampered = `${token.slice(0, -4)}AAAA`;
      expect(((await a.verify(tampered, now).catch((e: unknown) => e)) as DomainError).code).toBe(
        "access_token_invalid",
      );
      const foreign = createLocalKeyRing({
        issuer: "https://identity.test",
        audience: ["someone-else"],
        ttlSeconds: 1800,
        store: createSigningKeyStore(db().client),
        encryption: createKeyEncryption(Buffer.alloc(32, 9)),
        clock,
      });
      const otherAudience = await (await foreign).issue(claims, now);
      expect(((await a.verify(otherAudience, now).catch((e: unknown) => e)) as DomainError).code).toBe(
        "access_token_invalid",
      );
    });
  });
}
