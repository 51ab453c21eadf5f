/**
 * Who is calling, from what the request carries: the client's address behind trusted proxies, its
 * User-Agent without control characters, and a request id it may set (http-handler.ts reads them
 * into the request's ClientInfo).
 */
import { type BlockList, isIP } from "node:net";
import { isListed } from "../core/address-list.ts";
import { withoutControlCharacters } from "../core/plain-text.ts";

/**
 * The client's address: the socket peer, or, behind trusted proxies, the nearest hop of
 * X-Forwarded-For (read from the right) that is not itself a trusted proxy. Hops may carry a port
 * or brackets (`203.0.113.7:5150`, `[2001:db8::1]:443`); an unparsable hop (`unknown`, an
 * obfuscated name) stops the walk at the last trusted proxy, never skipping to an earlier hop the
 * client may have written itself.
 *
 * Not `proxy-addr` (Express's): it splits hops without removing ports or brackets, returns the first
 * hop its trust test refuses (so `unknown` or `203.0.113.7:5150` would become the client's address, where
 * we stop at the last trusted proxy), and leaves `::ffff:` on IPv4; bending it to these rules would need
 * more code around it than this walk. The trust list stays the one `BlockList` that
 * `connectionKey` and the address keys use (test/unit/client-ip.test.ts pins the rules).
 */
export function clientIp(peer: string | null, forwardedFor: string | undefined, proxies: BlockList): string | null {
  if (peer === null) return null;
  let ip = normalizeAddress(peer);
  if (forwardedFor === undefined) return ip;
  const hops = forwardedFor.split(",");
  while (isListed(proxies, ip) && hops.length > 0) {
    const hop = parseHop(hops.pop()!);
    if (hop === null) break;
    ip = hop;
  }
  return ip;
}

/** An address as the rest of the service writes it: IPv4 without its `::ffff:` mapping. */
export function normalizeAddress(address: string): string {
  return address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, "");
}

/** One X-Forwarded-For hop as an address without port or brackets, or null when it is none. */
function parseHop(raw: string): string | null {
  let hop = raw.trim();
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(hop);
  if (bracketed !== null) hop = bracketed[1]!;
  else if (/^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/.test(hop)) hop = hop.slice(0, hop.lastIndexOf(":"));
  hop = normalizeAddress(hop);
  return isIP(hop) === 0 ? null : hop;
}

export function userAgentOf(v: string | undefined): string | null {
  return v === undefined ? null : withoutControlCharacters(v);
}

export function sanitizeRequestId(v: string | string[] | undefined): string | null {
  const s = Array.isArray(v) ? v[0] : v;
  return s !== undefined && /^[A-Za-z0-9._:-]{1,128}$/.test(s) ? s : null;
}
