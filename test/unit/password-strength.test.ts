import { describe, expect, it } from "vitest";
import { normalizePassword, passwordWeakness } from "../../src/core/password-strength.ts";

const policy = { minLength: 12, maxLength: 128 };
const user = { username: "jane.doe", email: "jdoe.work@example.com" };
const weakness = (pw: string) => passwordWeakness(normalizePassword(pw), user, policy);

describe("passwordWeakness", () => {
  it("accepts long, unremarkable passwords and passphrases", () => {
    for (const ok of [
      "correct horse battery staple",
      "v7#Lq2!pZr9w",
      "Tr0ub4dor&3xylophone",
      "ein Hund läuft über die Straße",
      "8365 2947 1093 5520",
    ]) {
      expect(weakness(ok), ok).toBeNull();
    }
  });

  it("bounds the length in code points after NFKC", () => {
    expect(weakness("Xk9#mQ2$vL7")).toBe("too_short"); // 11
    expect(weakness("Xk9#mQ2$vL7!")).toBeNull(); // 12
    expect(weakness("😀🎉🐙🌵🍕🚲x7Kq2Z")).toBeNull(); // 12 code points, 18 UTF-16 units
    expect(weakness("a1B2c3D4e5F6".repeat(11))).toBe("too_long"); // 132
    expect(weakness("")).toBe("too_short");
  });

  it("normalizes compatibility forms, so the same password typed differently is the same", () => {
    expect(normalizePassword("ｐａｓｓ１２３")).toBe("pass123");
    expect(normalizePassword("cafe\u0301")).toBe(normalizePassword("caf\u00e9"));
  });

  it("refuses control characters", () => {
    expect(weakness("good password\u0000x")).toBe("invalid_characters");
    expect(weakness("good password\nline")).toBe("invalid_characters");
  });

  it("refuses repetition", () => {
    expect(weakness("aaaaaaaaaaaa")).toBe("repetitive");
    expect(weakness("abababababab")).toBe("repetitive");
    expect(weakness("xk2!xk2!xk2!")).toBe("repetitive"); // a 4-character unit
    expect(weakness("1234512345123451")).toBe("repetitive");
  });

  it("refuses sequences and keyboard walks", () => {
    expect(weakness("abcdefghijklmn")).toBe("sequential");
    expect(weakness("123456789012")).toBe("sequential");
    expect(weakness("zyxwvutsrqpo")).toBe("sequential");
    expect(weakness("qwertyuiop[]")).toBe("sequential");
    expect(weakness("1qaz2wsx3edc")).toBeNull(); // column walks are not rows: left to the word list
  });

  it("refuses short all-digit passwords", () => {
    expect(weakness("830614957203")).toBe("digits_only");
    expect(weakness("8306149572039182")).toBeNull();
  });

  it("refuses the user's own username or e-mail local part, also with look-alikes", () => {
    expect(weakness("Jane.Doe!2026#x")).toBe("contains_user_info");
    expect(weakness("my-jdoe.work-secret")).toBe("contains_user_info");
    expect(weakness("j4ne.d0e-is-here")).toBe("contains_user_info");
  });

  it("refuses common breached base words with decorations", () => {
    for (const common of [
      "Password123!",
      "P@ssw0rd2024",
      "password1234",
      "Welcome2024!!",
      "iloveyou1234",
      "summer2024summer!",
      "Qwerty123456!",
      "letmein!letmein",
      "mypassword123",
    ]) {
      expect(weakness(common), common).not.toBeNull();
    }
    expect(weakness("Password123!")).toBe("common");
    expect(weakness("P@ssw0rd2024")).toBe("common");
  });

  it("does not refuse passwords that merely contain a common word", () => {
    expect(weakness("correct horse battery staple")).toBeNull();
    expect(weakness("monkeys juggle purple anvils")).toBeNull();
  });
});
