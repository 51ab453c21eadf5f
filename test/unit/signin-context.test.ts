import { describe, expect, it } from "vitest";
import { coarseUserAgent, deviceKeyOf, networkOf } from "../../src/core/signin-context.ts";

const CHROME_WIN =
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const CHROME_WIN_NEXT = CHROME_WIN.replace("131.0.0.0", "132.0.6834.83");
const EDGE_WIN = `${CHROME_WIN} Edg/131.0.2903.86`;
const SAFARI_IPHONE =
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

describe("coarseUserAgent", () => {
  it("keeps browser family and OS family, never versions", () => {
    expect(coarseUserAgent(CHROME_WIN)).toBe("chrome/windows");
    expect(coarseUserAgent(CHROME_WIN_NEXT)).toBe("chrome/windows");
    expect(coarseUserAgent(EDGE_WIN)).toBe("edge/windows");
    expect(coarseUserAgent(SAFARI_IPHONE)).toBe("safari/ios");
    expect(coarseUserAgent(FIREFOX_LINUX)).toBe("firefox/linux");
  });

  it("uses the product name of non-browser clients", () => {
    expect(coarseUserAgent("grpc-node-js/1.14.7")).toBe("grpc-node-js");
    expect(coarseUserAgent("connect-es/2.2.0")).toBe("connect-es");
    expect(coarseUserAgent("curl/8.5.0")).toBe("curl");
  });

  it("is null without a User-Agent", () => {
    expect(coarseUserAgent(null)).toBeNull();
    expect(coarseUserAgent("   ")).toBeNull();
  });
});

describe("deviceKeyOf", () => {
  it("prefers the client's device identifier, hashed, and only that can be trusted", () => {
    const key = deviceKeyOf({ deviceId: "install-123", userAgent: CHROME_WIN });
    expect(key).toEqual({ key: expect.stringMatching(/^id:[A-Za-z0-9_-]{43}$/), trustable: true });
    expect(key!.key).not.toContain("install-123");
    expect(deviceKeyOf({ deviceId: "install-123", userAgent: null })).toEqual(key);
  });

  it("falls back to the coarse User-Agent fingerprint, which is never trustable", () => {
    const a = deviceKeyOf({ deviceId: null, userAgent: CHROME_WIN });
    expect(a).toEqual({ key: expect.stringMatching(/^ua:/), trustable: false });
    // A browser update is the same device; another browser is not.
    expect(deviceKeyOf({ deviceId: null, userAgent: CHROME_WIN_NEXT })).toEqual(a);
    expect(deviceKeyOf({ deviceId: null, userAgent: FIREFOX_LINUX })).not.toEqual(a);
  });

  it("is null when the client sends neither", () => {
    expect(deviceKeyOf({ deviceId: null, userAgent: null })).toBeNull();
  });
});

describe("networkOf", () => {
  const prefix = { ipv4: 24, ipv6: 48 };
  it("masks IPv4 to /24 and IPv6 to /48 by default", () => {
    expect(networkOf("203.0.113.77", prefix)).toBe("203.0.113.0/24");
    expect(networkOf("2001:db8:1:2:3:4:5:6", prefix)).toBe("2001:db8:1:0:0:0:0:0/48");
    expect(networkOf("2001:db8:1::1", prefix)).toBe("2001:db8:1:0:0:0:0:0/48");
    expect(networkOf("::1", prefix)).toBe("0:0:0:0:0:0:0:0/48");
  });

  it("honours other prefix lengths", () => {
    expect(networkOf("203.0.113.77", { ipv4: 16, ipv6: 64 })).toBe("203.0.0.0/16");
    expect(networkOf("203.0.113.77", { ipv4: 32, ipv6: 64 })).toBe("203.0.113.77/32");
    expect(networkOf("2001:db8:1:2:3:4:5:6", { ipv4: 24, ipv6: 56 })).toBe("2001:db8:1:0:0:0:0:0/56");
    expect(networkOf("2001:db8:1:2ff:3:4:5:6", { ipv4: 24, ipv6: 56 })).toBe("2001:db8:1:200:0:0:0:0/56");
  });

  it("is null for nothing or garbage", () => {
    expect(networkOf(null, prefix)).toBeNull();
    expect(networkOf("nonsense", prefix)).toBeNull();
  });
});
