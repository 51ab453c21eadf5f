import { describe, expect, it } from "vitest";
import { hasControlCharacters, withoutControlCharacters } from "../../src/core/plain-text.ts";

describe("hasControlCharacters", () => {
  it("finds every C0 code, DEL and every C1 code, anywhere in the text", () => {
    for (let c = 0; c <= 0x9f; c++) {
      const control = c < 0x20 || (c >= 0x7f && c <= 0x9f);
      expect(hasControlCharacters(`a${String.fromCharCode(c)}b`), `U+${c.toString(16)}`).toBe(control);
    }
  });
  it("accepts ordinary text in any script", () => {
    for (const s of [
      "",
      "alice@example.com",
      "+49 151 2345678",
      "Zoë Ångström",
      "山田 太郎",
      "محمد",
      "🙂 ok",
      "O'Brien-Smith",
    ]) {
      expect(hasControlCharacters(s), s).toBe(false);
    }
  });
});

describe("withoutControlCharacters", () => {
  it("shows each control character as U+FFFD and leaves other text as it is", () => {
    expect(withoutControlCharacters("Mozilla/5.0\t(X11)\u007f\u0085")).toBe("Mozilla/5.0\ufffd(X11)\ufffd\ufffd");
    expect(withoutControlCharacters("Zoë 🙂")).toBe("Zoë 🙂");
  });
});
