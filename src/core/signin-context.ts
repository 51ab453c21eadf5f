import { createHash } from "node:crypto";
import { isIP } from "node:net";
import type { ClientInfo } from "./model.ts";

/**
 * How a sign-in's device is recognised, in this order:
 *
 * 1. `id:` — the device identifier the client sends: `device_id` in SigninWithIdTokenRequest, or
 *    the `x-device-id` header (the field wins). A label: it only counts as "seen before" and
 *    never skips MFA (that takes the device credential VerifyMfa issues, ports/trusted-devices.ts).
 * 2. `ua:` — otherwise a coarse fingerprint of the User-Agent: browser family and OS family
 *    (`chrome/windows`), or the product name of a non-browser client (`grpc-node-js`). Versions are
 *    left out so that browser updates do not make every device new. Anyone can send any
 *    User-Agent, so a fingerprint only counts as "seen before"; it can never be trusted.
 * 3. null — neither: the device cannot be recognised and is always new.
 *
 * Only a SHA-256 of the identifier or fingerprint is stored (user_devices, mfa_challenges).
 */
export function deviceKeyOf(client: Pick<ClientInfo, "deviceId" | "userAgent">): DeviceKey | null {
  if (client.deviceId !== null && client.deviceId !== "") {
    return { key: `id:${sha256(client.deviceId)}`, trustable: true };
  }
  const fingerprint = coarseUserAgent(client.userAgent);
  return fingerprint === null ? null : { key: `ua:${sha256(fingerprint)}`, trustable: false };
}

export interface DeviceKey {
  key: string;
  /** A client-sent identifier (`id:`), not a User-Agent fingerprint. */
  trustable: boolean;
}

const OS_FAMILIES: readonly [string, RegExp][] = [
  ["windows", /windows/],
  ["ios", /iphone|ipad|ipod/],
  ["android", /android/],
  ["macos", /mac os x|macintosh/],
  ["chromeos", /cros/],
  ["linux", /linux|x11/],
];

// Order matters: Edge and Opera also say Chrome and Safari; Chrome also says Safari.
const BROWSER_FAMILIES: readonly [string, RegExp][] = [
  ["edge", /edg(e|a|ios)?\//],
  ["opera", /opr\/|opera/],
  ["samsung", /samsungbrowser/],
  ["firefox", /firefox|fxios/],
  ["chrome", /chrome|crios|chromium/],
  ["safari", /safari|applewebkit/],
];

/**
 * The browser and OS family of a User-Agent (`firefox`, `linux`), what a person recognises a
 * session or device by; each null when unknown. No versions, no identifiers.
 */
export function userAgentFamily(userAgent: string | null): { browser: string | null; os: string | null } {
  if (userAgent === null) return { browser: null, os: null };
  const ua = userAgent.toLowerCase().slice(0, 512);
  if (!ua.startsWith("mozilla/")) return { browser: null, os: null };
  return {
    browser: BROWSER_FAMILIES.find(([, re]) => re.test(ua))?.[0] ?? null,
    os: OS_FAMILIES.find(([, re]) => re.test(ua))?.[0] ?? null,
  };
}

/** The coarse fingerprint of a User-Agent (see deviceKeyOf), or null when there is none. */
export function coarseUserAgent(userAgent: string | null): string | null {
  if (userAgent === null) return null;
  const ua = userAgent.toLowerCase().slice(0, 512);
  const { browser, os } = userAgentFamily(userAgent);
  if (browser !== null || os !== null) {
    return `${browser ?? "browser"}/${os ?? "unknown"}`;
  }
  const product = /^[a-z0-9][a-z0-9._-]{0,63}/.exec(ua.trim())?.[0];
  return product ?? null;
}

/**
 * The network an address belongs to, as `prefix/length` (IPv4 /24 and IPv6 /48 by default: a
 * home or office, roughly, without pinning the exact address). Null for anything unparsable.
 */
export function networkOf(ip: string | null, prefix: { ipv4: number; ipv6: number }): string | null {
  if (ip === null) return null;
  const version = isIP(ip);
  if (version === 4) {
    const bits = ip
      .split(".")
      .map(Number)
      .reduce((acc, octet) => acc * 256 + octet, 0);
    const size = 2 ** (32 - prefix.ipv4);
    const base = Math.floor(bits / size) * size;
    const octets = [24, 16, 8, 0].map((shift) => Math.floor(base / 2 ** shift) % 256);
    return `${octets.join(".")}/${prefix.ipv4}`;
  }
  if (version === 6) {
    const groups = expandIpv6(ip);
    if (groups === null) return null;
    const out: number[] = [];
    for (let i = 0; i < 8; i++) {
      const keep = Math.max(0, Math.min(16, prefix.ipv6 - i * 16));
      const mask = keep === 0 ? 0 : (0xffff << (16 - keep)) & 0xffff;
      out.push(groups[i]! & mask);
    }
    return `${out.map((g) => g.toString(16)).join(":")}/${prefix.ipv6}`;
  }
  return null;
}

/** The eight 16-bit groups of an IPv6 address (with `::` and a trailing dotted IPv4 handled). */
export function expandIpv6(ip: string): number[] | null {
  let text = ip.split("%")[0]!.toLowerCase();
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4 !== null) {
    const o = v4[1]!.split(".").map(Number);
    text = `${text.slice(0, -v4[1]!.length)}${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const [head, tail] = text.split("::");
  const h = head === "" || head === undefined ? [] : head.split(":");
  const t = tail === undefined || tail === "" ? [] : tail.split(":");
  const missing = 8 - h.length - t.length;
  if (tail === undefined ? h.length !== 8 : missing < 1) return null;
  const groups = [...h, ...Array<string>(tail === undefined ? 0 : missing).fill("0"), ...t].map((g) => parseInt(g, 16));
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null;
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("base64url");
}
