import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config/load.ts";
import { createPublicUrls } from "../../src/config/public-url.ts";
import { adaptiveMfaSettings, relyingParty } from "../../src/config/to-deps.ts";

const load = (overrides: Record<string, unknown>) => loadConfig({ env: {}, overrides });
const rpOf = (overrides: Record<string, unknown>) => {
  const config = load(overrides);
  return relyingParty(config, createPublicUrls(config));
};

describe("webauthn config: the relying party", () => {
  it("defaults to the public URL: its host as RP ID, its origin as the one origin", () => {
    expect(rpOf({ "server.public_url": "https://login.example.com/base/" })()).toEqual({
      id: "login.example.com",
      name: "Identity",
      origins: ["https://login.example.com"],
    });
  });

  it("in dev mode without a public URL, follows the listening address once known", () => {
    const config = load({ dev: true });
    const urls = createPublicUrls(config);
    const rp = relyingParty(config, urls);
    expect(() => rp()).toThrow(/public URL/);
    urls.listening("http://localhost:8080");
    expect(rp()).toEqual({ id: "localhost", name: "Identity", origins: ["http://localhost:8080"] });
  });

  it("takes rp_id, rp_name and origins as configured (a parent domain for its subdomains); origins lose their paths", () => {
    expect(
      rpOf({
        "server.public_url": "https://id.internal:8443",
        "webauthn.rp_id": "example.com",
        "webauthn.rp_name": "Example",
        "webauthn.origins": ["https://app.example.com/", "https://login.example.com:8443/x"],
      })(),
    ).toEqual({
      id: "example.com",
      name: "Example",
      origins: ["https://app.example.com", "https://login.example.com:8443"],
    });
  });

  it("refuses an RP ID with a scheme, a port or upper case, naming the key", () => {
    for (const rpId of ["https://example.com", "example.com:443", "Example.com", ""]) {
      expect(() => load({ "webauthn.rp_id": rpId })).toThrow(ConfigError);
      expect(() => load({ "webauthn.rp_id": rpId })).toThrow(/webauthn\.rp_id/);
    }
  });

  it("mfa.high_risk_methods reaches the MFA policy; empty by default", () => {
    expect(adaptiveMfaSettings(load({})).policy.highRiskMethods).toEqual([]);
    expect(adaptiveMfaSettings(load({ "mfa.high_risk_methods": ["webauthn"] })).policy.highRiskMethods).toEqual([
      "webauthn",
    ]);
    expect(() => load({ "mfa.high_risk_methods": ["sms"] })).toThrow(/mfa\.high_risk_methods/);
  });
});
