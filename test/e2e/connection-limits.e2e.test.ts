/**
 * What slow, idle or numerous clients can hold (issue: hold under attack, availability). With
 * short limits configured: an idle HTTP/2 connection is closed; a request body that never
 * finishes gets 408 over HTTP/2 (REST and Connect) and HTTP/1.1; a connection preface trickled a
 * byte at a time is dropped at a fixed deadline; connections past `max_connections` are closed
 * at once, and the service keeps answering everyone else.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.ts";

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
        const stream = session.request({ ":method": "POST", ":path": path, "content-type": type, "content-length": "200" });
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
      const req = http.request({ host: "127.0.0.1", port, method: "POST", path: "/auth/id-token/signin", agent: false,
        headers: { "content-type": "application/json", "content-length": "200" } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
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
      // Held open with an unfinished request line (the handshake deadline would end them later).
      for (let i = 0; i < LIMITS.maxConnections; i++) {
        const s = net.connect(port, "127.0.0.1");
        s.on("error", () => {});
        await within(s, "connect", 2000);
        held.push(s);
      }
      await new Promise((r) => setTimeout(r, 50));
      const extra = net.connect(port, "127.0.0.1");
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
