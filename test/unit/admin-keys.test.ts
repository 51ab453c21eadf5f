/**
 * Admin API keys: how their hashes are read from the configuration, how a presented key is
 * checked (hashed, then compared in constant time with every configured hash), and the admin
 * interceptor's refusals over an in-memory transport. (Over a real server: test/e2e/admin-rpc.e2e.test.ts.)
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/pb/google/rpc/error_details_pb.ts";
import { AdminService } from "../../gen/pb/identity/v1/admin_service_pb.ts";
import { UserService } from "../../gen/pb/identity/v1/user_service_pb.ts";
import { ConfigError, loadConfig } from "../../src/config/load.ts";
import { silentLogger } from "../../src/logger.ts";
import { adminActorOf, adminInterceptor } from "../../src/rpc/admin-interceptor.ts";
import { errorInterceptor } from "../../src/rpc/errors.ts";
import {
  ADMIN_KEY_PATTERN,
  createAdminKeyVerifier,
  hashAdminKey,
  mintAdminKey,
  parseAdminKeyHash,
} from "../../src/tokens/admin-keys.ts";

const sha256 = (s: string) => createHash("sha256").update(s).digest();

describe("parseAdminKeyHash", () => {
  const digest = sha256("adm_example");

  it("reads 64 hex digits in either case and 43 base64url characters to the same bytes", () => {
    expect(parseAdminKeyHash(digest.toString("hex"))).toEqual(digest);
    expect(parseAdminKeyHash(digest.toString("hex").toUpperCase())).toEqual(digest);
    expect(parseAdminKeyHash(digest.toString("base64url"))).toEqual(digest);
  });

  it("refuses anything else: other lengths, padding, standard base64, non-canonical base64url", () => {
    const b64url = digest.toString("base64url");
    // The last of 43 characters carries 4 bits and 2 zero bits; setting one decodes the same.
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const nonCanonical = b64url.slice(0, 42) + alphabet[alphabet.indexOf(b64url[42]!) + 1]!;
    expect(Buffer.from(nonCanonical, "base64url")).toEqual(digest);
    for (const bad of [
      "",
      digest.toString("hex").slice(1),
      `${digest.toString("hex")}0`,
      `${b64url}=`,
      digest.toString("base64"), // 44 characters with padding (and maybe + or /)
      nonCanonical,
      "g".repeat(64),
    ]) {
      expect(parseAdminKeyHash(bad), bad).toBeNull();
    }
  });
});

describe("createAdminKeyVerifier", () => {
  const ops = "adm_" + "o".repeat(43);
  const ci = "adm_" + "c".repeat(43);
  const oncall = "adm_" + "n".repeat(43);
  const keys = [
    { name: "ops", sha256: parseAdminKeyHash(sha256(ops).toString("hex"))! },
    { name: "ci", sha256: parseAdminKeyHash(sha256(ci).toString("base64url"))! },
    { name: "oncall", sha256: sha256(oncall) },
  ];

  it("names the key that matches, whether its hash was configured as hex or base64url", () => {
    const verifier = createAdminKeyVerifier(keys);
    expect(verifier.enabled).toBe(true);
    expect(verifier.verify(ops)).toBe("ops");
    expect(verifier.verify(ci)).toBe("ci");
    expect(verifier.verify(oncall)).toBe("oncall");
  });

  it("refuses a wrong key, a key's hash, and near misses", () => {
    const verifier = createAdminKeyVerifier(keys);
    expect(verifier.verify("adm_" + "x".repeat(43))).toBeNull();
    expect(verifier.verify(sha256(ops).toString("hex"))).toBeNull();
    expect(verifier.verify(ops.slice(0, -1))).toBeNull();
    expect(verifier.verify(`${ops} `)).toBeNull();
    expect(verifier.verify("")).toBeNull();
  });

  it("compares the presented key's 32-byte hash with every configured hash, wherever (and whether) it matches", () => {
    for (const presented of [ops, oncall, "adm_wrong", "x".repeat(5000), ""]) {
      const calls: [number, number][] = [];
      const verifier = createAdminKeyVerifier(keys, (a, b) => {
        calls.push([a.length, b.length]);
        return timingSafeEqual(a, b);
      });
      verifier.verify(presented);
      // No early exit on a match, no shortcut on length: the same work for every input.
      expect(calls, presented).toEqual([
        [32, 32],
        [32, 32],
        [32, 32],
      ]);
    }
  });

  it("is off with no key configured, and refuses every key then", () => {
    const verifier = createAdminKeyVerifier([]);
    expect(verifier.enabled).toBe(false);
    expect(verifier.verify(ops)).toBeNull();
  });

  it("mints keys of 256 random bits whose configured hash verifies", () => {
    const { key, sha256Hex } = mintAdminKey();
    expect(key).toMatch(ADMIN_KEY_PATTERN);
    expect(mintAdminKey().key).not.toBe(key);
    expect(sha256Hex).toBe(hashAdminKey(key).toString("hex"));
    expect(createAdminKeyVerifier([{ name: "new", sha256: parseAdminKeyHash(sha256Hex)! }]).verify(key)).toBe("new");
  });
});

describe("admin.api_keys configuration", () => {
  const hex = sha256("adm_a").toString("hex");

  it("defaults to no keys (the admin API off)", () => {
    expect(loadConfig({ env: {} }).admin.api_keys).toEqual([]);
  });

  it("refuses a bad hash, a bad name, a duplicate name and one key configured twice, naming the entry", () => {
    const bad = (api_keys: unknown) => {
      try {
        loadConfig({ env: {}, overrides: { admin: { api_keys } } });
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as Error).message;
      }
      throw new Error("expected a ConfigError");
    };
    expect(bad([{ name: "ops", sha256: "adm_a" }])).toMatch(/admin\.api_keys\.0\.sha256: must be the key's SHA-256/);
    expect(bad([{ name: "has space", sha256: hex }])).toMatch(/admin\.api_keys\.0\.name/);
    expect(
      bad([
        { name: "ops", sha256: hex },
        { name: "ops", sha256: sha256("adm_b").toString("hex") },
      ]),
    ).toMatch(/admin\.api_keys\.1\.name: two keys are named ops/);
    expect(
      bad([
        { name: "a", sha256: hex },
        { name: "b", sha256: sha256("adm_a").toString("base64url") },
      ]),
    ).toMatch(/admin\.api_keys\.1\.sha256: this key is configured twice/);
    expect(bad([{ name: "ops", sha256: hex, key: "adm_a" }])).toMatch(/admin\.api_keys\.0/);
  });
});

describe("adminInterceptor", () => {
  const key = "adm_" + "k".repeat(43);
  const verifier = createAdminKeyVerifier([{ name: "ops", sha256: sha256(key) }]);

  /** AdminService whose ListUsers answers with the actor's name as the only user's username. */
  function client(v = verifier) {
    const transport = createRouterTransport(
      (router) => {
        router.service(AdminService, {
          listUsers: (_req, ctx) => ({ users: [{ id: "usr_x", username: adminActorOf(ctx.values) }] }),
        });
        router.service(UserService, { getCurrentUser: () => ({ id: "usr_me" }) });
      },
      {
        router: {
          interceptors: [errorInterceptor(silentLogger), adminInterceptor(v, { service: AdminService.typeName })],
        },
      },
    );
    return { admin: createClient(AdminService, transport), users: createClient(UserService, transport) };
  }

  async function refusal(headers: Record<string, string>, v = verifier) {
    const e = await client(v)
      .admin.listUsers({}, { headers })
      .then(
        () => null,
        (err: unknown) => ConnectError.from(err),
      );
    expect(e, "expected a refusal").not.toBeNull();
    return { code: e!.code, reason: e!.findDetails(ErrorInfoSchema)[0]?.reason, message: e!.rawMessage };
  }

  it("puts the key's name in the context, from either header", async () => {
    for (const headers of [
      { authorization: `Bearer ${key}` },
      { authorization: `bearer  ${key}` },
      { "x-admin-key": key },
    ]) {
      const res = await client().admin.listUsers({}, { headers });
      expect(res.users[0]?.username).toBe("ops");
    }
  });

  it("refuses a missing credential, a user's access token and other schemes with admin_credential_required", async () => {
    const jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c3JfeCJ9.c2ln";
    expect(await refusal({})).toMatchObject({ code: Code.Unauthenticated, reason: "admin_credential_required" });
    expect(await refusal({ authorization: `Bearer ${jwt}` })).toMatchObject({
      code: Code.Unauthenticated,
      reason: "admin_credential_required",
      message: expect.stringContaining("access tokens are never accepted"),
    });
    expect(await refusal({ authorization: `Basic ${Buffer.from(`ops:${key}`).toString("base64")}` })).toMatchObject({
      reason: "admin_credential_required",
    });
  });

  it("refuses a wrong key, a malformed x-admin-key and two credentials with admin_credential_invalid", async () => {
    expect(await refusal({ authorization: `Bearer adm_${"w".repeat(43)}` })).toMatchObject({
      code: Code.Unauthenticated,
      reason: "admin_credential_invalid",
    });
    expect(await refusal({ "x-admin-key": "not-a-key" })).toMatchObject({ reason: "admin_credential_invalid" });
    // Even when one of the two is right: a doubt is a refusal.
    expect(await refusal({ "x-admin-key": key, authorization: "Bearer eyJ.e.s" })).toMatchObject({
      reason: "admin_credential_invalid",
    });
  });

  it("refuses every call with admin_disabled when no key is configured, the right-looking key too", async () => {
    const off = createAdminKeyVerifier([]);
    expect(await refusal({ authorization: `Bearer ${key}` }, off)).toMatchObject({
      code: Code.PermissionDenied,
      reason: "admin_disabled",
    });
    expect(await refusal({}, off)).toMatchObject({ reason: "admin_disabled" });
  });

  it("leaves other services alone", async () => {
    expect((await client().users.getCurrentUser({})).id).toBe("usr_me");
  });

  it("a handler outside the interceptor refuses rather than act without an actor", async () => {
    const transport = createRouterTransport(
      (router) => {
        router.service(AdminService, {
          listUsers: (_req, ctx) => ({ users: [{ id: "usr_x", username: adminActorOf(ctx.values) }] }),
        });
      },
      { router: { interceptors: [errorInterceptor(silentLogger)] } },
    );
    const e = await createClient(AdminService, transport)
      .listUsers({})
      .then(
        () => null,
        (err: unknown) => ConnectError.from(err),
      );
    expect(e?.findDetails(ErrorInfoSchema)[0]?.reason).toBe("admin_credential_required");
  });
});
