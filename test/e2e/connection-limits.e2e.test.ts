/**
 * What slow, idle or numerous clients can hold, so the service stays available under attack. With
 * short limits configured: an idle HTTP/2 connection is closed; a request body that never
 * finishes gets 408 over HTTP/2 (REST and Connect) and HTTP/1.1; a connection preface trickled a
 * byte at a time is dropped at a fixed deadline; connections past `max_connections` are closed
 * at once, and the service keeps answering everyone else; one address gets only its share.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.ts";
import { devIdToken, uniqueSub } from "../support/signin-e2e.ts";

const LIMITS = { idle: 1000, request: 600, handshake: 700, maxConnections: 6 };

describe("connection limits", () => {
  let t: TestApp;
  let port: number;

  beforeAll(async () => {
    t = await startTestApp({
      config: {
        dev: true,
        "server.idle_timeout_ms": LIMITS.idle,
        "server.request_timeout_ms": LIMITS.request,
        "server.handshake_timeout_ms": LIMITS.handshake,
        "server.max_connections": LIMITS.maxConnections,
      },
    });
    port = Number(new URL(t.url).port);
  });
  afterAll(async () => {
    await t?.close();
  });

  /** Resolves with the ms until `emitter` emits `event`, or rejects after `withinMs`. */
  function within(emitter: NodeJS.EventEmitter, event: string, withinMs: number): Promise<number> {
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${event} within ${withinMs} ms`)), withinMs);
      emitter.once(event, () => {
        clearTimeout(timer);
        resolve(Date.now() - started);
      });
    });
  }

  it("closes an idle HTTP/2 (h2c) connection", async () => {
    const session = http2.connect(t.url);
    session.on("error", () => {});
    await within(session, "connect", 2000);
    const ms = await within(session, "close", 5000);
    expect(ms).toBeGreaterThanOrEqual(LIMITS.idle - 100);
  });

  for (const [label, path, type] of [
    ["REST", "/auth/id-token/signin", "application/json"],
    ["Connect", "/identity.v1.AuthService/SigninWithIdToken", "application/json"],
  ] as const) {
    it(`answers 408 to an HTTP/2 ${label} body that never finishes, and frees the stream`, async () => {
      const session = http2.connect(t.url);
      session.on("error", () => {});
      try {
        const stream = session.request({
          ":method": "POST",
          ":path": path,
          "content-type": type,
          "content-length": "200",
        });
        stream.on("error", () => {});
        stream.write('{"id_token": "');
        const started = Date.now();
        const response = await new Promise<{ status: number; body: string }>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error("no answer within 5 s")), 5000);
          let status = 0;
          let body = "";
          stream.on("response", (h) => (status = Number(h[":status"])));
          stream.on("data", (d: Buffer) => (body += d.toString()));
          stream.on("close", () => {
            clearTimeout(timer);
            resolve({ status, body });
          });
        });
        expect(response.status).toBe(408);
        expect(JSON.parse(response.body)).toMatchObject({ code: "request_timeout" });
        // The stream itself is reset right after the answer, not left to the idle timeout.
        expect(Date.now() - started).toBeLessThan(LIMITS.idle);
      } finally {
        session.destroy();
      }
    });
  }

  it("answers 408 to an HTTP/1.1 body that never finishes", async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port,
          method: "POST",
          path: "/auth/id-token/signin",
          agent: false,
          headers: { "content-type": "application/json", "content-length": "200" },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode!);
        },
      );
      req.on("error", reject);
      req.write('{"id_token": "');
      setTimeout(() => reject(new Error("no answer within 5 s")), 5000).unref();
    });
    expect(status).toBe(408);
  });

  it("drops a connection that trickles its preface past the handshake deadline", async () => {
    const socket = net.connect(port, "127.0.0.1");
    socket.on("error", () => {});
    await within(socket, "connect", 2000);
    const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    let i = 0;
    const drip = setInterval(() => {
      if (i < preface.length && !socket.destroyed) socket.write(preface.subarray(i, ++i));
    }, 100);
    try {
      const ms = await within(socket, "close", 3000);
      expect(ms).toBeLessThan(LIMITS.handshake + 1000);
      expect(i).toBeLessThan(preface.length); // it was still trickling
    } finally {
      clearInterval(drip);
    }
  });

  it("closes connections past max_connections at once, and serves again when they go", async () => {
    const held: net.Socket[] = [];
    try {
      // Held open with an unfinished request line (the handshake deadline would end them later),
      // from three addresses (one address alone gets at most ¾ of them: the test below).
      for (let i = 0; i < LIMITS.maxConnections; i++) {
        const s = net.connect({ port, host: "127.0.0.1", localAddress: `127.0.0.${11 + (i % 3)}` });
        s.on("error", () => {});
        await within(s, "connect", 2000);
        held.push(s);
      }
      await new Promise((r) => setTimeout(r, 50));
      expect(held.every((s) => !s.destroyed)).toBe(true);
      const extra = net.connect({ port, host: "127.0.0.1", localAddress: "127.0.0.14" });
      extra.on("error", () => {});
      const ms = await within(extra, "close", 2000);
      expect(ms).toBeLessThan(LIMITS.handshake);
    } finally {
      for (const s of held) s.destroy();
    }
    await new Promise((r) => setTimeout(r, 100));
    expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
  });
});

/**
 * One address cannot take every connection. The regression: `max_connections`
 * was only global, so one address holding that many h2c connections (each with a sign-in body
 * that never ends) kept every other client out. Here, with max_connections 60 and 20 per
 * address, 127.0.0.2 tries 70 connections and, on those it keeps, more never-ending streams
 * than its share; 127.0.0.3 is served meanwhile (loopback answers on all of 127/8).
 */
describe("one address against everybody else", () => {
  const CAP = { total: 60, perAddress: 20, requestsPerAddress: 10 };
  const ATTACKER = "127.0.0.2";
  const OTHER = "127.0.0.3";
  const PROXY = "127.0.0.5";
  let t: TestApp;
  let port: number;
  beforeAll(async () => {
    t = await startTestApp({
      config: {
        dev: true,
        "server.max_connections": CAP.total,
        "server.max_connections_per_address": CAP.perAddress,
        "server.max_requests_per_address": CAP.requestsPerAddress,
        "server.trusted_proxies": [PROXY],
        // The attacker's bodies must outlive the test: nothing here is ended by a timeout.
        "server.request_timeout_ms": 60_000,
        "server.idle_timeout_ms": 60_000,
      },
    });
    port = Number(new URL(t.url).port);
  });
  afterAll(async () => {
    await t?.close();
  });

  /** An h2c session from `localAddress`; resolves once it is up, or with null when it is closed first. */
  function h2From(localAddress: string): Promise<http2.ClientHttp2Session | null> {
    const session = http2.connect(t.url, {
      createConnection: () => net.connect({ host: "127.0.0.1", port, localAddress }),
    });
    session.on("error", () => {});
    return new Promise((resolve) => {
      // A connection the server takes answers its SETTINGS; one it refuses is closed first.
      session.once("remoteSettings", () => resolve(session));
      session.once("close", () => resolve(null));
    });
  }

  /** Starts a sign-in whose body never ends on `session`; resolves with the status if one comes within `ms`. */
  function neverEndingSignin(
    session: http2.ClientHttp2Session,
    ms: number,
    headers: http2.OutgoingHttpHeaders = {},
  ): Promise<number | null> {
    const stream = session.request({
      ":method": "POST",
      ":path": "/auth/id-token/signin",
      "content-type": "application/json",
      "content-length": "2000",
      ...headers,
    });
    stream.on("error", () => {});
    stream.write('{"id_token": "');
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), ms);
      stream.once("response", (h) => {
        clearTimeout(timer);
        resolve(Number(h[":status"]));
      });
      stream.once("close", () => {
        clearTimeout(timer);
        resolve(null);
      });
    });
  }

  /** GET or POST from `localAddress` over HTTP/1.1: the status, or an error's code. */
  function h1From(localAddress: string, method: string, path: string, body?: unknown): Promise<number | string> {
    return new Promise((resolve) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port,
          localAddress,
          method,
          path,
          headers: { "content-type": "application/json", connection: "close" },
          timeout: 3000,
        },
        (res) => {
          res.resume();
          res.once("end", () => resolve(res.statusCode!));
        },
      );
      req.once("timeout", () => req.destroy(new Error("timeout")));
      req.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  it("caps one address's connections and open requests, and serves another address's /healthz and sign-in meanwhile", async () => {
    const sessions: http2.ClientHttp2Session[] = [];
    try {
      const opened = await Promise.all(Array.from({ length: 70 }, () => h2From(ATTACKER)));
      for (const s of opened) if (s !== null) sessions.push(s);
      // Each kept connection holds a sign-in whose body never ends: no answer comes.
      const held = await Promise.all(sessions.map((s) => neverEndingSignin(s, 300)));
      await new Promise((r) => setTimeout(r, 100));
      const open = sessions.filter((s) => !s.closed && !s.destroyed);
      expect(open.length).toBeLessThanOrEqual(CAP.perAddress);
      expect(open.length).toBeGreaterThan(0);
      // The open requests beyond the address's share were answered at once: 429.
      expect(held.filter((s) => s === null).length).toBeLessThanOrEqual(CAP.requestsPerAddress);
      expect(held.filter((s) => s === 429).length).toBeGreaterThan(0);
      // More streams on a connection it holds: refused at once, not held.
      expect(await neverEndingSignin(open[0]!, 2000)).toBe(429);
      // A gRPC client learns it from grpc-status: RESOURCE_EXHAUSTED, in a trailers-only answer.
      const grpcRefusal = await new Promise<http2.IncomingHttpHeaders>((resolve) => {
        const stream = open[0]!.request({
          ":method": "POST",
          ":path": "/identity.v1.AuthService/SigninWithIdToken",
          "content-type": "application/grpc",
          te: "trailers",
        });
        stream.on("error", () => {});
        stream.once("response", resolve);
        stream.write(Buffer.from([0, 0, 0, 0, 10]));
      });
      expect(grpcRefusal[":status"]).toBe(200);
      expect(grpcRefusal["grpc-status"]).toBe("8");

      // Everybody else is served meanwhile, every time.
      for (let i = 0; i < 5; i++) expect(await h1From(OTHER, "GET", "/healthz")).toBe(200);
      const token = await devIdToken(t.url, uniqueSub("other"));
      expect(await h1From(OTHER, "POST", "/auth/id-token/signin", { id_token: token, provider: "dev" })).toBe(200);
      const other = await h2From(OTHER);
      expect(other).not.toBeNull();
      other?.close();
    } finally {
      for (const s of sessions) s.destroy();
    }
    // When the attacker's connections go, the address is served again (as soon as the server has
    // seen them close: polled, since a loaded machine takes a moment).
    let status: number | string = 0;
    for (const until = Date.now() + 10_000; status !== 200 && Date.now() < until;) {
      await new Promise((r) => setTimeout(r, 100));
      status = await h1From(ATTACKER, "GET", "/healthz");
    }
    expect(status).toBe(200);
  });

  it("behind a trusted proxy: the proxy's connections are not capped, the forwarded address's open requests are", async () => {
    const sessions: http2.ClientHttp2Session[] = [];
    try {
      // A load balancer carries everybody: more connections than one address's share, all kept.
      for (const s of await Promise.all(Array.from({ length: CAP.perAddress + 10 }, () => h2From(PROXY))))
        if (s !== null) sessions.push(s);
      expect(sessions).toHaveLength(CAP.perAddress + 10);
      await new Promise((r) => setTimeout(r, 100));
      expect(sessions.every((s) => !s.closed && !s.destroyed)).toBe(true);
      // One forwarded client holds its share of never-ending requests; its next one is refused at once.
      const attacker = { "x-forwarded-for": "198.51.100.7" };
      const held = await Promise.all(
        sessions.slice(0, CAP.requestsPerAddress).map((s) => neverEndingSignin(s, 300, attacker)),
      );
      expect(held.every((status) => status === null)).toBe(true);
      expect(await neverEndingSignin(sessions.at(-1)!, 2000, attacker)).toBe(429);
      // Another client behind the same proxy is served.
      const stream = sessions.at(-1)!.request({ ":path": "/healthz", "x-forwarded-for": "198.51.100.8" });
      stream.on("error", () => {});
      const status = await new Promise<number>((resolve) =>
        stream.once("response", (h) => resolve(Number(h[":status"]))),
      );
      stream.resume();
      expect(status).toBe(200);
    } finally {
      for (const s of sessions) s.destroy();
    }
  });
});
