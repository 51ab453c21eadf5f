/** TOTP matching (window, replay) and recovery codes, with fixed times. */
import { describe, expect, it } from "vitest";
import { Secret, TOTP } from "otpauth";
import { createRecoveryCodes } from "../../src/tokens/recovery-codes.ts";
import { createSecretBox } from "../../src/tokens/secret-box.ts";
import { createKeyEncryption } from "../../src/tokens/key-encryption.ts";
import { createTotpEngine, totpCode } from "../../src/tokens/totp.ts";

const T0 = new Date("2026-03-01T12:00:10Z"); // 10 s into a 30-second step
const step = (d: Date) => Math.floor(d.getTime() / 30_000);
const at = (ms: number) => new Date(T0.getTime() + ms);

describe("TOTP engine", () => {
  const totp = createTotpEngine({ issuer: "Identity Test", window: 1 });
  const secret = totp.newSecret();

  it("makes 160-bit base32 secrets and otpauth:// URIs authenticator apps read", () => {
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    const uri = totp.keyUri(secret, "ada.lovelace");
    expect(uri).toMatch(/^otpauth:\/\/totp\/Identity%20Test:ada.lovelace\?/);
    const parsed = new URL(uri);
    expect(parsed.searchParams.get("secret")).toBe(secret);
    expect(parsed.searchParams.get("issuer")).toBe("Identity Test");
    expect(parsed.searchParams.get("digits")).toBe("6");
    expect(parsed.searchParams.get("period")).toBe("30");
    expect(parsed.searchParams.get("algorithm")).toBe("SHA1");
  });

  it("agrees with an independent RFC 6238 implementation", () => {
    const other = TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: T0.getTime() });
    expect(totpCode(secret, T0)).toBe(other);
  });

  it("accepts the current code and returns its time step; spaces are ignored", () => {
    const code = totpCode(secret, T0);
    expect(totp.match(secret, code, T0, null)).toBe(step(T0));
    expect(totp.match(secret, `${code.slice(0, 3)} ${code.slice(3)}`, T0, null)).toBe(step(T0));
  });

  it("accepts one step of clock drift either way, not two", () => {
    expect(totp.match(secret, totpCode(secret, at(-30_000)), T0, null)).toBe(step(T0) - 1);
    expect(totp.match(secret, totpCode(secret, at(30_000)), T0, null)).toBe(step(T0) + 1);
    expect(totp.match(secret, totpCode(secret, at(-60_000)), T0, null)).toBeNull();
    expect(totp.match(secret, totpCode(secret, at(60_000)), T0, null)).toBeNull();
  });

  it("refuses a replay: a code of the last used step or an earlier one", () => {
    const code = totpCode(secret, T0);
    const used = totp.match(secret, code, T0, null)!;
    expect(totp.match(secret, code, at(5_000), used)).toBeNull();
    expect(totp.match(secret, totpCode(secret, at(-30_000)), T0, used)).toBeNull();
    expect(totp.match(secret, totpCode(secret, at(30_000)), at(30_000), used)).toBe(used + 1);
  });

  it("refuses wrong, malformed and foreign codes", () => {
    const code = totpCode(secret, T0);
    const wrong = String((Number(code) + 1) % 1_000_000).padStart(6, "0");
    expect(totp.match(secret, wrong, T0, null)).toBeNull();
    expect(totp.match(secret, "12345", T0, null)).toBeNull();
    expect(totp.match(secret, "abcdef", T0, null)).toBeNull();
    expect(totp.match(totp.newSecret(), code, T0, null)).toBeNull();
  });
});

describe("recovery codes", () => {
  const codes = createRecoveryCodes(Buffer.alloc(32, 1));

  it("generates distinct 60-bit codes shown as xxxxx-xxxxx-xx", () => {
    const set = codes.generate(10);
    expect(set).toHaveLength(10);
    expect(new Set(set).size).toBe(10);
    for (const c of set) expect(c).toMatch(/^[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{2}$/);
  });

  it("hashes per user, under the key, forgiving case, spaces, dashes and look-alikes", () => {
    const [code] = codes.generate(1);
    const h = codes.hash("usr_a", code!);
    expect(h).not.toContain(code!.replace(/-/g, ""));
    expect(codes.equal(codes.hash("usr_a", code!.toUpperCase().replace(/-/g, " ")), h)).toBe(true);
    expect(codes.equal(codes.hash("usr_a", "0l1i0-00000-00"), codes.hash("usr_a", "o1110-00000-00"))).toBe(true);
    expect(codes.equal(codes.hash("usr_b", code!), h)).toBe(false);
    expect(codes.equal(createRecoveryCodes(Buffer.alloc(32, 2)).hash("usr_a", code!), h)).toBe(false);
  });
});

describe("secret box", () => {
  it("seals text under the KEK, bound to its row", () => {
    const box = createSecretBox(createKeyEncryption(Buffer.alloc(32, 3)));
    const sealed = box.seal("JBSWY3DPEHPK3PXP", "mfa_1");
    expect(sealed).not.toContain("JBSWY3DPEHPK3PXP");
    expect(box.open(sealed, "mfa_1")).toBe("JBSWY3DPEHPK3PXP");
    expect(() => box.open(sealed, "mfa_2")).toThrow();
  });
});
