import { BlockList, isIP } from "node:net";
import { expandIpv6, networkOf } from "./signin-context.ts";

/**
 * A list of addresses and networks to check client addresses against (trusted proxies, the risk
 * allow- and denylists), from config entries: CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single
 * addresses. The config schema has already refused anything else.
 */
export function addressListOf(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address, bits] = entry.split("/");
    const type = isIP(address!) === 6 ? "ipv6" : "ipv4";
    if (bits === undefined) list.addAddress(address!, type);
    else list.addSubnet(address!, Number(bits), type);
  }
  return list;
}

/** Whether `ip` (an IPv4 or IPv6 address) is in `list`; false for anything that is no address. */
export function isListed(list: BlockList, ip: string): boolean {
  const family = isIP(ip);
  return family !== 0 && list.check(ip, family === 6 ? "ipv6" : "ipv4");
}

/** Prefix lengths that make one client for the per-address limits (config `rate_limit.ipv4_prefix` / `ipv6_prefix`). */
export interface AddressPrefixes {
  ipv4: number;
  ipv6: number;
}

/**
 * What the per-address limits count `ip` under (issue 18): IPv6 by its prefix (/64 by default:
 * one subscriber's network, whose addresses a client can rotate through at will), IPv4 by its
 * prefix (/32 by default: the address itself, written as it is). An IPv4-mapped IPv6 address
 * (`::ffff:192.0.2.1`, `::ffff:c000:201`) is its IPv4 address. One spelling per key:
 * `2001:db8:1:2:0:0:0:0/64`. Anything unparsable is its own key.
 */
export function addressKeyOf(ip: string, prefixes: AddressPrefixes): string {
  const version = isIP(ip);
  if (version === 4) return prefixes.ipv4 === 32 ? ip : networkOf(ip, prefixes)!;
  if (version !== 6) return ip;
  const groups = expandIpv6(ip);
  if (groups === null) return ip;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const v4 = `${groups[6]! >> 8}.${groups[6]! & 0xff}.${groups[7]! >> 8}.${groups[7]! & 0xff}`;
    return addressKeyOf(v4, prefixes);
  }
  return networkOf(ip, prefixes)!;
}
