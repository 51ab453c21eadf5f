import { BlockList, isIP } from "node:net";

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
