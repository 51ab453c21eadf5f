import { readFileSync } from "node:fs";
import { Reader, type Response } from "maxmind";
import type { GeoLocator } from "../core/ports/risk-history.ts";
import type { GeoPoint } from "../core/risk.ts";

/** The record shapes understood: MaxMind GeoIP2/GeoLite2 (Country or City), or flat ones. */
interface GeoRecord {
  country?: { iso_code?: unknown };
  registered_country?: { iso_code?: unknown };
  location?: { latitude?: unknown; longitude?: unknown };
  // Flat layouts, as in the ip-location-db packages.
  country_code?: unknown;
  latitude?: unknown;
  longitude?: unknown;
}

/**
 * Places addresses with a MaxMind DB (`.mmdb`) file read once at start (GeoLite2-Country gives
 * countries; GeoLite2-City also coordinates, which impossible travel needs). Nothing is ever
 * downloaded: the operator provides and updates the file; a restart picks up a new one.
 */
export function openGeoIp(path: string): GeoLocator {
  let reader: Reader<Response>;
  try {
    reader = new Reader<Response>(readFileSync(path));
  } catch (e) {
    throw new Error(`risk.geoip_db: cannot read ${path} as a MaxMind DB: ${(e as Error).message}`, { cause: e });
  }
  return {
    locate(ip) {
      let record: GeoRecord | null;
      try {
        // Read structurally: any layout with a country code and/or coordinates will do.
        record = reader.get(ip) as GeoRecord | null;
      } catch {
        return null; // Not an address the database can look up (e.g. IPv6 in an IPv4 database).
      }
      return record === null ? null : pointOf(record);
    },
  };
}

function pointOf(r: GeoRecord): GeoPoint | null {
  const country = text(r.country?.iso_code) ?? text(r.country_code) ?? text(r.registered_country?.iso_code);
  const latitude = coordinate(r.location?.latitude ?? r.latitude, 90);
  const longitude = coordinate(r.location?.longitude ?? r.longitude, 180);
  const located = latitude !== null && longitude !== null;
  if (country === null && !located) return null;
  return { country, latitude: located ? latitude : null, longitude: located ? longitude : null };
}

function text(v: unknown): string | null {
  return typeof v === "string" && /^[A-Za-z]{2}$/.test(v) ? v.toUpperCase() : null;
}

function coordinate(v: unknown, limit: number): number | null {
  const n = typeof v === "string" ? Number(v) : v;
  return typeof n === "number" && Number.isFinite(n) && Math.abs(n) <= limit ? n : null;
}
