import { COMMON_PASSWORD_WORDS } from "./common-passwords.ts";

/** Length bounds for new passwords, counted in Unicode code points after normalization. */
export interface PasswordStrengthPolicy {
  minLength: number;
  maxLength: number;
}

/** Why a new password was refused; sent to the client as the `reason` detail of `password_too_weak`. */
export type PasswordWeakness =
  | "too_short"
  | "too_long"
  | "invalid_characters"
  | "repetitive"
  | "sequential"
  | "digits_only"
  | "common"
  | "contains_user_info";

const WORDS_LONGEST_FIRST = [...COMMON_PASSWORD_WORDS].sort((a, b) => b.length - a.length);

const KEYBOARD_ROWS = [
  "1234567890-=",
  "qwertyuiop[]",
  "asdfghjkl;'",
  "zxcvbnm,./",
  "!@#$%^&*()_+",
  "qwertzuiopü",
  "azertyuiop",
  "qsdfghjklm",
  "wxcvbn",
];

/** Common look-alike substitutions, undone before comparing with the word list. */
const UNLEET: Record<string, string> = {
  "0": "o",
  "1": "i",
  "3": "e",
  "4": "a",
  "5": "s",
  "7": "t",
  "8": "b",
  "9": "g",
  "@": "a",
  $: "s",
  "!": "i",
  "|": "l",
  "+": "t",
};

/**
 * Passwords are compared and hashed in NFKC form, so the same password typed on two keyboards
 * (composed or decomposed accents, full-width digits) is the same password (NIST SP 800-63B 5.1.1.2).
 */
export function normalizePassword(password: string): string {
  return password.normalize("NFKC");
}

/**
 * The first rule a (normalized) new password breaks, or null when it is acceptable. The rules
 * follow NIST SP 800-63B rather than composition rules: length, no control characters, not
 * trivially repetitive or sequential, not a common breached base word with decorations, and not
 * built from the user's own username or e-mail.
 */
export function passwordWeakness(
  password: string,
  user: { username: string; email: string | null },
  policy: PasswordStrengthPolicy,
): PasswordWeakness | null {
  const chars = [...password];
  if (chars.length < policy.minLength) return "too_short";
  if (chars.length > policy.maxLength) return "too_long";
  if (/[\p{Cc}\p{Cs}\u2028\u2029]/u.test(password)) return "invalid_characters";
  const lower = password.toLowerCase();
  if (isRepetitive([...lower], policy.minLength)) return "repetitive";
  if (runCount([...lower]) < 4) return "sequential";
  if (/^[\d\s]+$/.test(password) && chars.length < 16) return "digits_only";
  if (containsUserInfo(lower, user)) return "contains_user_info";
  if (isCommon(lower)) return "common";
  return null;
}

/** Public text for each reason (no part of the password is ever echoed). */
export function weaknessMessage(reason: PasswordWeakness, policy: PasswordStrengthPolicy): string {
  switch (reason) {
    case "too_short":
      return `the new password must be at least ${policy.minLength} characters long`;
    case "too_long":
      return `the new password must be at most ${policy.maxLength} characters long`;
    case "invalid_characters":
      return "the new password contains control characters";
    case "repetitive":
      return "the new password repeats too few characters";
    case "sequential":
      return "the new password is a simple sequence (like 123456 or qwerty)";
    case "digits_only":
      return "a password made only of digits must be at least 16 characters long";
    case "contains_user_info":
      return "the new password must not contain your username or e-mail address";
    case "common":
      return "the new password is too common; it appears in lists of breached passwords";
  }
}

/** Fewer than 5 distinct characters, or a repeated unit shorter than the minimum length. */
function isRepetitive(chars: string[], minLength: number): boolean {
  if (new Set(chars).size < 5) return true;
  for (let unit = 1; unit <= chars.length / 2; unit++) {
    if (unit >= minLength) break;
    let periodic = true;
    for (let i = unit; i < chars.length && periodic; i++) periodic = chars[i] === chars[i - unit];
    if (periodic) return true;
  }
  return false;
}

/**
 * How many runs the password splits into, where a run continues while each character repeats the
 * previous one, is its neighbour in code points (abc, 321) or on a keyboard row (qwe, lkj).
 */
function runCount(chars: string[]): number {
  let runs = chars.length === 0 ? 0 : 1;
  for (let i = 1; i < chars.length; i++) {
    if (!continuesRun(chars[i - 1]!, chars[i]!)) runs++;
  }
  return runs;
}

function continuesRun(a: string, b: string): boolean {
  const delta = Math.abs(a.codePointAt(0)! - b.codePointAt(0)!);
  if (delta <= 1) return true;
  for (const row of KEYBOARD_ROWS) {
    const i = row.indexOf(a);
    if (i !== -1 && (row[i + 1] === b || (i > 0 && row[i - 1] === b))) return true;
  }
  return false;
}

function containsUserInfo(lower: string, user: { username: string; email: string | null }): boolean {
  const parts = [user.username, user.email?.split("@")[0] ?? ""]
    .map((p) => p.toLowerCase())
    .filter((p) => p.length >= 4);
  const unleeted = unleet(lower);
  return parts.some((p) => lower.includes(p) || unleeted.includes(p));
}

/**
 * A common base word with decorations: once every listed word is cut out (matching after undoing
 * look-alike substitutions), fewer than 3 letters remain and the listed words made up at least
 * half of the password ("Password123!", "P@ssw0rd2024", "summer2024summer!").
 */
function isCommon(lower: string): boolean {
  const plain = unleet(lower);
  const cut = new Array<boolean>(plain.length).fill(false);
  for (const word of WORDS_LONGEST_FIRST) {
    for (let i = plain.indexOf(word); i !== -1; i = plain.indexOf(word, i + 1)) {
      if (cut.slice(i, i + word.length).some(Boolean)) continue;
      cut.fill(true, i, i + word.length);
    }
  }
  const removed = cut.filter(Boolean).length;
  let lettersLeft = 0;
  for (let i = 0; i < lower.length; i++) if (!cut[i] && /\p{L}/u.test(lower[i]!)) lettersLeft++;
  return lettersLeft < 3 && removed * 2 >= lower.length;
}

/** Undoes look-alike substitutions one code unit for one, so indexes line up with the input. */
function unleet(s: string): string {
  return s.replace(/[01345789@$!|+]/g, (c) => UNLEET[c] ?? c);
}
