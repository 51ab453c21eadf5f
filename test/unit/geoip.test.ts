import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openGeoIp } from "../../src/geo/geoip.ts";
import { buildMmdb, cityRecord } from "../support/mmdb-writer.ts";

const dir = mkdtempSync(join(tmpdir(), "geoip-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function dbFile(name: string, bytes: Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

describe("openGeoIp over a MaxMind DB built by the test", () => {
  const path = dbFile(
    "city.mmdb",
    buildMmdb([
      { network: "203.0.113.0/24", data: cityRecord("DE", 52.52, 13.405) },
      { network: "198.51.100.0/25", data: cityRecord("AU", -33.8688, 151.2093) },
      { network: "2001:db8:1::/48", data: cityRecord("JP", 35.6762, 139.6503) },
      // Country-level only, and the flat layout of the ip-location-db packages.
      { network: "192.0.2.0/24", data: { country: { iso_code: "fr" } } },
      { network: "100.64.0.0/16", data: { country_code: "NZ", latitude: "-41.28", longitude: "174.77" } },
    ]),
  );
  const geo = openGeoIp(path);

  it("places IPv4 addresses with country and coordinates", () => {
    expect(geo.locate("203.0.113.77")).toEqual({ country: "DE", latitude: 52.52, longitude: 13.405 });
    expect(geo.locate("198.51.100.1")).toEqual({ country: "AU", latitude: -33.8688, longitude: 151.2093 });
  });

  it("respects prefix lengths: just outside a network is unknown", () => {
    expect(geo.locate("198.51.100.200")).toBeNull();
    expect(geo.locate("203.0.114.1")).toBeNull();
  });

  it("places IPv6 addresses", () => {
    expect(geo.locate("2001:db8:1:ffff::1")).toEqual({ country: "JP", latitude: 35.6762, longitude: 139.6503 });
    expect(geo.locate("2001:db8:2::1")).toBeNull();
  });

  it("reads country-only and flat records (upper-casing codes)", () => {
    expect(geo.locate("192.0.2.9")).toEqual({ country: "FR", latitude: null, longitude: null });
    expect(geo.locate("100.64.3.4")).toEqual({ country: "NZ", latitude: -41.28, longitude: 174.77 });
  });

  it("answers null for what it cannot look up", () => {
    expect(geo.locate("not-an-ip")).toBeNull();
    expect(geo.locate("127.0.0.1")).toBeNull();
  });

  it("fails at start, naming the setting, for a file that is not a MaxMind DB", () => {
    const bad = dbFile("bad.mmdb", Buffer.from("hello"));
    expect(() => openGeoIp(bad)).toThrow(/risk\.geoip_db: cannot read/);
    expect(() => openGeoIp(join(dir, "missing.mmdb"))).toThrow(/risk\.geoip_db/);
  });
});
