import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.ts";
import { startTestApp, type TestApp } from "../support/app.ts";

/**
 * Logs never carry tokens, secrets or personal data: whatever happens (success, refusal,
 * refresh, reuse), no log line contains a token, the e-mail address or the external subject.
 */
describe("what the service logs", () => {
  let t: TestApp;
  const lines: string[] = [];
  const json = { "content-type": "application/json" };

  beforeAll(async () => {
    t = await startTestApp({ config: { dev: true }, logger: createLogger({ level: "debug", write: (l) => lines.push(l) }) });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("contains no tokens, e-mail addresses or subjects, but does record refusals with their codes", async () => {
    const secrets: string[] = [];
    const sub = "log-subject-4711";
    const email = "private.person@example.com";
    const minted = (await (await fetch(`${t.url}/dev/oidc/token`, { method: "POST", headers: json, body: JSON.stringify({ sub, email }) })).json()) as { id_token: string };
    secrets.push(minted.id_token, sub, email);
    const call = (path: string, body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${t.url}${path}`, { method: "POST", headers: { ...json, ...headers }, body: JSON.stringify(body) });

    const ok = (await (await call("/auth/id-token/signin", { id_token: minted.id_token, provider: "dev" })).json()) as Record<string, string>;
    secrets.push(ok["access_token"]!, ok["refresh_token"]!);
    const tampered = `${minted.id_token.slice(0, -8)}AAAAAAAA`;
    secrets.push(tampered);
    expect((await call("/auth/id-token/signin", { id_token: tampered, provider: "dev" })).status).toBe(401);
    expect((await call("/auth/id-token/signin", { id_token: "not-a-jwt", provider: "dev" })).status).toBe(400);
    const rotated = (await (await call("/auth/token/refresh", { refresh_token: ok["refresh_token"] })).json()) as Record<string, string>;
    secrets.push(rotated["access_token"]!, rotated["refresh_token"]!);
    expect((await call("/auth/token/refresh", { refresh_token: ok["refresh_token"] })).status).toBe(401);
    expect((await fetch(`${t.url}/auth/me`, { headers: { authorization: `Bearer ${rotated["access_token"]}` } })).status).toBe(401);

    const all = lines.join("");
    expect(lines.length).toBeGreaterThan(3);
    for (const secret of secrets) expect(all).not.toContain(secret);
    // Tokens in part (e.g. a signature or payload segment) do not leak either.
    for (const token of [minted.id_token, ok["access_token"]!]) {
      for (const segment of token.split(".")) expect(all).not.toContain(segment);
    }
    expect(all).toContain('"code":"id_token_signature_invalid"');
    expect(all).toContain('"code":"refresh_token_reused"');
  });
});
