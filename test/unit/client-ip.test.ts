import { BlockList } from "node:net";
import { describe, expect, it } from "vitest";
import { addressKeyOf } from "../../src/core/address-list.ts";
import { clientIp } from "../../src/rpc/client-info.ts";

/** X-Forwarded-For behind trusted proxies: only their entries are believed, whatever a client sends. */
describe("clientIp", () => {
  const proxies = new BlockList();
  proxies.addSubnet("10.0.0.0", 8, "ipv4");
  proxies.addAddress("2001:db8::10", "ipv6");

  it("is the socket peer without trusted proxies, whatever the header says", () => {
    expect(clientIp("198.51.100.9", "203.0.113.7", new BlockList())).toBe("198.51.100.9");
    expect(clientIp("::ffff:198.51.100.9", undefined, proxies)).toBe("198.51.100.9");
  });

  it("takes the nearest untrusted hop behind trusted proxies", () => {
    expect(clientIp("10.0.0.1", "203.0.113.7", proxies)).toBe("203.0.113.7");
    expect(clientIp("10.0.0.1", "198.51.100.1, 203.0.113.7, 10.0.0.2", proxies)).toBe("203.0.113.7");
  });

  it("strips ports and brackets", () => {
    expect(clientIp("10.0.0.1", "203.0.113.7:5150", proxies)).toBe("203.0.113.7");
    expect(clientIp("10.0.0.1", "[2001:db8::1]:443", proxies)).toBe("2001:db8::1");
    expect(clientIp("10.0.0.1", "[2001:db8::1]", proxies)).toBe("2001:db8::1");
    expect(clientIp("10.0.0.1", " 2001:db8::1 ", proxies)).toBe("2001:db8::1");
    expect(clientIp("2001:db8::10", "::ffff:203.0.113.7", proxies)).toBe("203.0.113.7");
  });

  it("stops at the first unparsable hop instead of skipping to one the client wrote", () => {
    expect(clientIp("10.0.0.1", "203.0.113.66, unknown", proxies)).toBe("10.0.0.1");
    expect(clientIp("10.0.0.1", "203.0.113.66, _hidden, 10.0.0.2", proxies)).toBe("10.0.0.2");
    expect(clientIp("10.0.0.1", "203.0.113.66, 999.1.1.1", proxies)).toBe("10.0.0.1");
  });
});

/** What every per-address limit counts a client under (IPv6 by its prefix). */
describe("addressKeyOf", () => {
  const defaults = { ipv4: 32, ipv6: 64 };

  it("keys IPv6 by its /64, one spelling for every address and every way of writing it", () => {
    const key = "2001:db8:1:2:0:0:0:0/64";
    for (const ip of [
      "2001:db8:1:2::1",
      "2001:db8:1:2:ffff:ffff:ffff:ffff",
      "2001:0DB8:0001:0002:0000:0000:0000:0001",
      "2001:db8:1:2::",
    ]) {
      expect(addressKeyOf(ip, defaults), ip).toBe(key);
    }
    expect(addressKeyOf("2001:db8:1:3::1", defaults)).toBe("2001:db8:1:3:0:0:0:0/64");
    expect(addressKeyOf("2001:db8:1:2::1", { ipv4: 32, ipv6: 48 })).toBe("2001:db8:1:0:0:0:0:0/48");
    expect(addressKeyOf("2001:db8:1:2::1", { ipv4: 32, ipv6: 56 })).toBe(
      addressKeyOf("2001:db8:1:ff::1", { ipv4: 32, ipv6: 56 }),
    );
    expect(addressKeyOf("2001:db8:1:2::1", { ipv4: 32, ipv6: 128 })).not.toBe(
      addressKeyOf("2001:db8:1:2::2", { ipv4: 32, ipv6: 128 }),
    );
  });

  it("keys IPv4 by the address itself by default, or by its prefix, and an IPv4-mapped IPv6 address as its IPv4", () => {
    expect(addressKeyOf("192.0.2.44", defaults)).toBe("192.0.2.44");
    expect(addressKeyOf("::ffff:192.0.2.44", defaults)).toBe("192.0.2.44");
    expect(addressKeyOf("::ffff:c000:22c", defaults)).toBe("192.0.2.44");
    expect(addressKeyOf("192.0.2.44", { ipv4: 24, ipv6: 64 })).toBe("192.0.2.0/24");
    expect(addressKeyOf("::ffff:192.0.2.200", { ipv4: 24, ipv6: 64 })).toBe("192.0.2.0/24");
    // ::1 and 0:0:0:0:0:ffff:… are not the same thing: only ::ffff:0:0/96 is IPv4-mapped.
    expect(addressKeyOf("::1", defaults)).toBe("0:0:0:0:0:0:0:0/64");
  });
});
