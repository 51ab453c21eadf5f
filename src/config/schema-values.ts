import { isIP } from "node:net";
import { z } from "zod";

/** Value shapes more than one section of the config uses: durations, networks, SHA-256 hashes. */

export const seconds = z.number().int().nonnegative();
export const positiveSeconds = z.number().int().positive();

/** An address or a CIDR block, IPv4 or IPv6. */
export const cidr = z.string().refine(
  (v) => {
    const [address, bits, extra] = v.split("/");
    const version = isIP(address ?? "");
    if (version === 0 || extra !== undefined) return false;
    if (bits === undefined) return true;
    return /^\d{1,3}$/.test(bits) && Number(bits) <= (version === 4 ? 32 : 128);
  },
  { message: "must be an IP address or a CIDR block (203.0.113.0/24, 2001:db8::/32)" },
);

/** A key's or secret's SHA-256 as written: 64 hex digits or 43 base64url characters (canonical). */
export const sha256Hash = z
  .string()
  .refine(
    (v) =>
      /^[0-9a-fA-F]{64}$/.test(v) ||
      (/^[A-Za-z0-9_-]{43}$/.test(v) && Buffer.from(v, "base64url").toString("base64url") === v),
    {
      message:
        "must be the key's SHA-256: 64 hex digits or 43 base64url characters (`npm run admin -- keys new` prints it)",
    },
  );

/** The same hash in either spelling, as one string (to find duplicates). */
export const hashBytes = (v: string) =>
  v.length === 64 ? v.toLowerCase() : Buffer.from(v, "base64url").toString("hex");
