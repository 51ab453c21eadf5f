import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.ts";
import { createPublicUrls } from "../../src/config/public-url.ts";

const urlsOf = (overrides: Record<string, unknown>) => createPublicUrls(loadConfig({ env: {}, overrides }));

describe("the public base URL", () => {
  it("is server.public_url (without a trailing slash) for everything, tokens.issuer overriding only the issuer", () => {
    const urls = urlsOf({ "server.public_url": "https://id.example.com/" });
    expect(urls.configured).toBe(true);
    urls.listening("http://127.0.0.1:8080"); // the listening address does not change a configured URL
    expect([urls.base(), urls.issuer(), urls.jwksUri(), urls.devIssuer()]).toEqual([
      "https://id.example.com",
      "https://id.example.com",
      "https://id.example.com/.well-known/jwks.json",
      "https://id.example.com/dev/oidc",
    ]);
    const withIssuer = urlsOf({
      "server.public_url": "https://id.example.com",
      "tokens.issuer": "https://issuer.example.com",
    });
    expect([withIssuer.issuer(), withIssuer.jwksUri()]).toEqual([
      "https://issuer.example.com",
      "https://id.example.com/.well-known/jwks.json",
    ]);
  });

  it("is otherwise the listening address, known once the server listens, and never guessed before", () => {
    const urls = urlsOf({ "server.port": 0 });
    expect(urls.configured).toBe(false);
    expect(() => urls.issuer()).toThrow(/known once the server listens/);
    urls.listening("http://127.0.0.1:41234");
    urls.listening("http://127.0.0.1:9"); // computed once
    expect([urls.issuer(), urls.jwksUri()]).toEqual([
      "http://127.0.0.1:41234",
      "http://127.0.0.1:41234/.well-known/jwks.json",
    ]);
  });

  it("names an unspecified listening address (0.0.0.0, ::) localhost", () => {
    const v4 = urlsOf({});
    v4.listening("http://0.0.0.0:8080");
    expect(v4.base()).toBe("http://localhost:8080");
    const v6 = urlsOf({});
    v6.listening("https://[::]:8443");
    expect(v6.base()).toBe("https://localhost:8443");
  });
});
