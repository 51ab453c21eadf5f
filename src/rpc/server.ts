import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { type NodeRequest, type NodeResponse, sendError } from "./http-io.ts";

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export interface ServerOptions {
  host: string;
  port: number;
  tls?: { certFile: string; keyFile: string } | undefined;
  /**
   * A socket of this process's own with SO_REUSEPORT (Linux spreads connections over every
   * socket on the port), instead of a cluster worker's socket shared through its supervisor.
   */
  reusePort?: boolean | undefined;
  /** What slow or idle clients may hold (see config `server.*_timeout_ms`, `max_connections`). */
  limits: {
    maxConnections: number;
    /**
     * Open connections from one client address at most (never more than ¾ of `maxConnections`,
     * so one address always leaves a share to the others). Trusted proxies are exempt.
     */
    maxConnectionsPerAddress: number;
    /** HTTP/2 streams open at once on one connection. */
    maxStreamsPerConnection: number;
    /** Fixed deadline (never extended by trickled bytes) to send the protocol's first bytes / finish TLS. */
    handshakeTimeoutMs: number;
    /** An HTTP/2 session with no frames for this long is closed. */
    idleTimeoutMs: number;
    /** A request (headers and body) must have arrived in full by then: 408, or the stream is reset. */
    requestTimeoutMs: number;
  };
  listener: (req: NodeRequest, res: NodeResponse) => void;
  /**
   * The key a peer address is counted under for `maxConnectionsPerAddress` (an IPv6 address: its
   * prefix), or null for a peer that is not capped (a trusted proxy: it carries many clients).
   */
  connectionKey: (peer: string) => string | null;
}

export interface RunningServer {
  /** The bound port (useful with port 0). */
  port: number;
  url: string;
  /**
   * Stops accepting, lets in-flight requests finish (up to `timeoutMs`, or until `hurry` is
   * aborted: an operator's deliberate second Ctrl-C), then closes the rest.
   */
  close(timeoutMs: number, hurry?: AbortSignal): Promise<void>;
}

/**
 * One port for every protocol. Cleartext: each connection's first bytes decide: the HTTP/2
 * preface (gRPC clients use h2c with prior knowledge) goes to an HTTP/2 server, anything else to
 * HTTP/1.1. With TLS: ALPN offers h2 and http/1.1.
 */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const sessions = new Set<http2.Http2Session>();
  const sockets = new Set<net.Socket>();
  const h2Sockets = new WeakSet<net.Socket>();
  /** HTTP/1.1 requests in flight per socket, so draining can close idle keep-alive sockets. */
  const inflight = new Map<net.Socket, number>();
  let shuttingDown = false;
  const { limits } = options;
  const listener = (req: NodeRequest, res: NodeResponse) => {
    if (req.httpVersionMajor === 2) bodyDeadline(req as http2.Http2ServerRequest, res as http2.Http2ServerResponse, limits.requestTimeoutMs);
    if (req.httpVersionMajor === 1) {
      const socket = req.socket;
      inflight.set(socket, (inflight.get(socket) ?? 0) + 1);
      // While draining, responses announce `connection: close` so keep-alive sockets end.
      if (shuttingDown) res.setHeader("connection", "close");
      res.once("close", () => {
        const left = (inflight.get(socket) ?? 1) - 1;
        if (left > 0) inflight.set(socket, left);
        else inflight.delete(socket);
        if (shuttingDown && left <= 0) socket.end();
      });
    }
    options.listener(req, res);
  };
  let h1: http.Server | undefined;
  let h2: http2.Http2Server | http2.Http2SecureServer;
  let outer: net.Server;

  if (options.tls !== undefined) {
    const secure = http2.createSecureServer(
      {
        cert: readFileSync(options.tls.certFile),
        key: readFileSync(options.tls.keyFile),
        allowHTTP1: true,
        ALPNProtocols: ["h2", "http/1.1"],
        handshakeTimeout: limits.handshakeTimeoutMs,
        settings: { maxConcurrentStreams: limits.maxStreamsPerConnection },
      },
      listener,
    );
    h2 = secure;
    outer = secure;
  } else {
    h1 = http.createServer(
      {
        keepAliveTimeout: 5000,
        requestTimeout: limits.requestTimeoutMs,
        headersTimeout: Math.min(60_000, limits.requestTimeoutMs),
        // How often Node checks those deadlines (its default, 30 s, would let them run over by that much).
        connectionsCheckingInterval: Math.min(30_000, Math.max(250, Math.floor(limits.requestTimeoutMs / 4))),
      },
      listener,
    );
    h2 = http2.createServer({ settings: { maxConcurrentStreams: limits.maxStreamsPerConnection } }, listener);
    const plain1 = h1;
    const plain2 = h2;
    outer = net.createServer((socket) => {
      let seen = Buffer.alloc(0);
      // A client that does not say its protocol in time is dropped: a fixed deadline, so that
      // trickling the preface a byte at a time cannot hold the socket (the servers' own timeouts
      // start only once they own it).
      const deadline = setTimeout(() => socket.destroy(), limits.handshakeTimeoutMs);
      const onData = (chunk: Buffer) => {
        seen = Buffer.concat([seen, chunk]);
        const n = Math.min(seen.length, H2_PREFACE.length);
        const isH2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
        if (isH2 && seen.length < H2_PREFACE.length) return; // Need more bytes to decide.
        socket.off("data", onData);
        clearTimeout(deadline);
        // Put the bytes back and hand the socket over. An HTTP/2 session takes over the data
        // already buffered in the socket; resuming it here would drop the preface.
        socket.pause();
        socket.unshift(seen);
        if (isH2) {
          h2Sockets.add(socket);
          plain2.emit("connection", socket);
        } else {
          plain1.emit("connection", socket);
          socket.resume();
        }
      };
      socket.on("data", onData);
      socket.on("error", () => socket.destroy());
      socket.once("close", () => clearTimeout(deadline));
    });
  }
  // One address cannot take every connection (issue 18): past its share, a new connection is
  // closed at once, before any handshake, leaving the rest of `maxConnections` to the others.
  const perAddress = new Map<string, number>();
  const perAddressCap = Math.max(1, Math.min(limits.maxConnectionsPerAddress, limits.maxConnections - Math.ceil(limits.maxConnections / 4)));
  outer.on("connection", (socket: net.Socket) => {
    const key = socket.remoteAddress === undefined ? null : options.connectionKey(socket.remoteAddress);
    if (key === null) return;
    const held = perAddress.get(key) ?? 0;
    if (held >= perAddressCap) {
      socket.destroy();
      return;
    }
    perAddress.set(key, held + 1);
    socket.once("close", () => {
      const left = (perAddress.get(key) ?? 1) - 1;
      if (left > 0) perAddress.set(key, left);
      else perAddress.delete(key);
    });
  });
  // Track the sockets requests arrive on: plain TCP sockets, or TLS sockets once handshaken.
  outer.on(options.tls === undefined ? "connection" : "secureConnection", (socket: net.Socket) => {
    // No Nagle: an answer is several small writes (HTTP/2 HEADERS, DATA, trailers); waiting to
    // coalesce them meets the peer's delayed ACK and stalls every call by tens of milliseconds.
    socket.setNoDelay(true);
    if ((socket as { alpnProtocol?: string | false }).alpnProtocol === "h2") h2Sockets.add(socket);
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  h2.on("session", (s: http2.Http2Session) => {
    // An idle connection is closed; one whose streams trickle is ended by each stream's deadline.
    s.setTimeout(limits.idleTimeoutMs, () => s.destroy());
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });

  outer.maxConnections = limits.maxConnections;
  await new Promise<void>((resolve, reject) => {
    outer.once("error", reject);
    const own = options.reusePort === true ? { exclusive: true, reusePort: true } : {};
    outer.listen({ port: options.port, host: options.host, ...own }, () => {
      outer.off("error", reject);
      resolve();
    });
  });
  // Node arms an HTTP server's request/headers timeouts (slowloris protection) when it starts
  // listening; ours never listens itself (the sniffing server hands it sockets), so say it did.
  h1?.emit("listening");
  const address = outer.address() as net.AddressInfo;
  const hostForUrl = address.family === "IPv6" ? `[${address.address}]` : address.address;

  return {
    port: address.port,
    url: `${options.tls === undefined ? "http" : "https"}://${hostForUrl}:${address.port}`,
    async close(timeoutMs, hurry) {
      shuttingDown = true;
      // Resolves once every connection has ended.
      const closed = new Promise<void>((resolve) => outer.close(() => resolve()));
      // HTTP/2: GOAWAY, open streams finish. HTTP/1.1: idle keep-alive sockets close now, busy
      // ones after their response (which says `connection: close`).
      for (const s of sessions) s.close();
      for (const socket of sockets) {
        if (!h2Sockets.has(socket) && !inflight.has(socket)) socket.end();
      }
      const cutShort = () => {
        for (const s of sessions) s.destroy();
        for (const s of sockets) s.destroy();
      };
      const deadline = setTimeout(cutShort, timeoutMs);
      if (hurry?.aborted) cutShort();
      else hurry?.addEventListener("abort", cutShort, { once: true });
      await closed;
      clearTimeout(deadline);
      hurry?.removeEventListener("abort", cutShort);
    },
  };
}

/**
 * HTTP/2 has no request timeout of its own: a stream whose request has not arrived in full by the
 * deadline gets 408 `request_timeout` (or, if an answer already started, a reset), and its
 * stream is closed, so a client cannot hold handler state by trickling a body.
 */
function bodyDeadline(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse, timeoutMs: number): void {
  const timer = setTimeout(() => {
    if (req.complete || res.writableEnded) return;
    if (res.headersSent) {
      req.stream.close(http2.constants.NGHTTP2_CANCEL);
      return;
    }
    // The answer first, then the stream is reset so the client stops sending its body.
    req.stream.once("finish", () => req.stream.close(http2.constants.NGHTTP2_CANCEL));
    sendError(res, "request_timeout", `the request did not arrive in full within ${timeoutMs} ms`);
  }, timeoutMs);
  timer.unref();
  req.once("end", () => clearTimeout(timer));
  res.once("close", () => clearTimeout(timer));
}
