import { randomBase32 } from "./ids.ts";

const MIN = 3;
const MAX = 32;

/**
 * A username candidate from the identity's claims: `preferred_username`, else the e-mail's local
 * part, else the name, else "user". Lower case, `[a-z0-9._-]`, 3–32 characters. It is a display
 * handle only: it never identifies the account (that is the (issuer, subject) link).
 */
export function baseUsername(claims: {
  preferredUsername: string | null;
  email: string | null;
  name: string | null;
}): string {
  const sources = [
    claims.preferredUsername?.split("@")[0],
    claims.email?.split("@")[0],
    claims.name?.replace(/\s+/g, "."),
  ];
  for (const source of sources) {
    const cleaned = clean(source ?? "");
    if (cleaned.length >= MIN) return cleaned;
  }
  return "user";
}

/** `base` with a random suffix, for when `base` is already taken. */
export function suffixedUsername(base: string): string {
  const suffix = randomBase32(4).slice(0, 6);
  return `${base.slice(0, MAX - suffix.length - 1)}.${suffix}`;
}

function clean(raw: string): string {
  return raw
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, "")
    .replace(/^[._-]+|[._-]+$/g, "")
    .replace(/[._-]{2,}/g, ".")
    .slice(0, MAX);
}

/** Lower-cased, trimmed e-mail used as the lookup key; null when absent or implausible. */
export function normalizeEmail(email: string | null): string | null {
  if (email === null) return null;
  const e = email.trim().toLowerCase();
  return /^[^\s@]+@[^\s@]+$/.test(e) && e.length <= 320 ? e : null;
}
