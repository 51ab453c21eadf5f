import { describe, expect, it } from "vitest";
import { createArgon2PasswordHasher } from "../../src/tokens/password-hasher.ts";

describe("Argon2id password hasher", () => {
  const hasher = createArgon2PasswordHasher({ memoryKib: 19_456, timeCost: 2, parallelism: 1 });

  it("produces Argon2id PHC strings with the configured parameters and a fresh salt", async () => {
    const a = await hasher.hash("correct horse battery staple");
    const b = await hasher.hash("correct horse battery staple");
    expect(a).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    expect(b).not.toBe(a);
  });

  it("verifies the right password only", async () => {
    const stored = await hasher.hash("correct horse battery staple");
    expect(await hasher.verify(stored, "correct horse battery staple")).toBe(true);
    expect(await hasher.verify(stored, "correct horse battery stapl")).toBe(false);
    expect(await hasher.verify(stored, "")).toBe(false);
  });

  it("keeps verifying hashes made with other parameters (parameters can change in config)", async () => {
    const old = await createArgon2PasswordHasher({ memoryKib: 8192, timeCost: 5, parallelism: 2 }).hash(
      "pw with old params",
    );
    expect(old).toContain("$m=8192,t=5,p=2$");
    expect(await hasher.verify(old, "pw with old params")).toBe(true);
  });

  it("never matches malformed or foreign hashes", async () => {
    expect(await hasher.verify("", "x")).toBe(false);
    expect(await hasher.verify("$argon2id$garbage", "x")).toBe(false);
    expect(await hasher.verify("$2b$10$abcdefghijklmnopqrstuuCgXvbeoQW3YSPoAFT7bxQ2h4PO4qGq", "x")).toBe(false);
    // An Argon2i hash of the same password is refused: only our algorithm counts.
    const { hash } = await import("@node-rs/argon2");
    const argon2i = await hash("x-password", { algorithm: 1 });
    expect(await hasher.verify(argon2i, "x-password")).toBe(false);
  });
});
