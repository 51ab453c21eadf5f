import { BlockList } from "node:net";
import { describe, expect, it } from "vitest";
import { clientIp } from "../../src/rpc/http-handler.ts";

/** X-Forwarded-For behind trusted proxies (issue: hold under attack, input). */
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
