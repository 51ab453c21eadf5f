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
  const open = openConnections();
  const listener = trackedListener(options, open);
  const { outer, h1, h2 } =
    options.tls === undefined
      ? cleartextServers(options, listener, open)
      : secureServers(options, options.tls, listener);
  capConnectionsPerAddress(outer, options);
  trackConnections(outer, h2, options, open);
  outer.maxConnections = options.limits.maxConnections;
  await listen(outer, options);
  // Node arms an HTTP server's request/headers timeouts (slowloris protection) when it starts
  // listening; ours never listens itself (the sniffing server hands it sockets), so say it did.
  h1?.emit("listening");
  const address = outer.address() as net.AddressInfo;
  const hostForUrl = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    port: address.port,
    url: `${options.tls === undefined ? "http" : "https"}://${hostForUrl}:${address.port}`,
    close: (timeoutMs, hurry) => drainAndClose(outer, open, timeoutMs, hurry),
  };
}

/** What is open on the server, so that draining can end each part in its own way. */
interface OpenConnections {
  sessions: Set<http2.Http2Session>;
  sockets: Set<net.Socket>;
  h2Sockets: WeakSet<net.Socket>;
  /** HTTP/1.1 requests in flight per socket, so draining can close idle keep-alive sockets. */
  inflight: Map<net.Socket, number>;
  shuttingDown: boolean;
}

function openConnections(): OpenConnections {
  return {
    sessions: new Set(),
    sockets: new Set(),
    h2Sockets: new WeakSet(),
    inflight: new Map(),
    shuttingDown: false,
  };
}

/** The app's listener, with each HTTP/2 request's body deadline and each HTTP/1.1 request counted. */
function trackedListener(options: ServerOptions, open: OpenConnections) {
  const { limits } = options;
  return (req: NodeRequest, res: NodeResponse) => {
    if (req.httpVersionMajor === 2)
      bodyDeadline(req as http2.Http2ServerRequest, res as http2.Http2ServerResponse, limits.requestTimeoutMs);
    if (req.httpVersionMajor === 1) {
      const socket = req.socket;
      open.inflight.set(socket, (open.inflight.get(socket) ?? 0) + 1);
      // While draining, responses announce `connection: close` so keep-alive sockets end.
      if (open.shuttingDown) res.setHeader("connection", "close");
      res.once("close", () => {
        const left = (open.inflight.get(socket) ?? 1) - 1;
        if (left > 0) open.inflight.set(socket, left);
        else open.inflight.delete(socket);
        if (open.shuttingDown && left <= 0) socket.end();
      });
    }
    options.listener(req, res);
  };
}

interface Servers {
  /** The server that listens on the port. */
  outer: net.Server;
  /** Cleartext HTTP/1.1, handed its sockets by `outer` (with TLS, `outer` serves HTTP/1.1 itself). */
  h1: http.Server | undefined;
  h2: http2.Http2Server | http2.Http2SecureServer;
}

/** TLS: one HTTP/2 server that also speaks HTTP/1.1, chosen by ALPN. */
function secureServers(
  options: ServerOptions,
  tls: NonNullable<ServerOptions["tls"]>,
  listener: NodeListener,
): Servers {
  const { limits } = options;
  const secure = http2.createSecureServer(
    {
      cert: readFileSync(tls.certFile),
      key: readFileSync(tls.keyFile),
      allowHTTP1: true,
      ALPNProtocols: ["h2", "http/1.1"],
      handshakeTimeout: limits.handshakeTimeoutMs,
      settings: { maxConcurrentStreams: limits.maxStreamsPerConnection },
    },
    listener,
  );
  return { outer: secure, h1: undefined, h2: secure };
}

/** Cleartext: HTTP/1.1 and HTTP/2 servers, and in front of them the server that sniffs which. */
function cleartextServers(options: ServerOptions, listener: NodeListener, open: OpenConnections): Servers {
  const { limits } = options;
  const h1 = http.createServer(
    {
      keepAliveTimeout: 5000,
      requestTimeout: limits.requestTimeoutMs,
      headersTimeout: Math.min(60_000, limits.requestTimeoutMs),
      // How often Node checks those deadlines (its default, 30 s, would let them run over by that much).
      connectionsCheckingInterval: Math.min(30_000, Math.max(250, Math.floor(limits.requestTimeoutMs / 4))),
    },
    listener,
  );
  const h2 = http2.createServer({ settings: { maxConcurrentStreams: limits.maxStreamsPerConnection } }, listener);
  const outer = net.createServer((socket) => sniffProtocol(socket, { h1, h2 }, open, limits.handshakeTimeoutMs));
  return { outer, h1, h2 };
}

/**
 * Reads a cleartext connection's first bytes and hands it to the HTTP/2 server (the preface) or
 * the HTTP/1.1 one (anything else).
 */
function sniffProtocol(
  socket: net.Socket,
  servers: { h1: http.Server; h2: http2.Http2Server },
  open: OpenConnections,
  timeoutMs: number,
): void {
  let seen = Buffer.alloc(0);
  // A client that does not say its protocol in time is dropped: a fixed deadline, so that
  // trickling the preface a byte at a time cannot hold the socket (the servers' own timeouts
  // start only once they own it).
  const deadline = setTimeout(() => socket.destroy(), timeoutMs);
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
      open.h2Sockets.add(socket);
      servers.h2.emit("connection", socket);
    } else {
      servers.h1.emit("connection", socket);
      socket.resume();
    }
  };
  socket.on("data", onData);
  socket.on("error", () => socket.destroy());
  socket.once("close", () => clearTimeout(deadline));
}

/**
 * One address cannot take every connection (issue 18): past its share, a new connection is
 * closed at once, before any handshake, leaving the rest of `maxConnections` to the others.
 */
function capConnectionsPerAddress(outer: net.Server, options: ServerOptions): void {
  const { limits } = options;
  const perAddress = new Map<string, number>();
  const perAddressCap = Math.max(
    1,
    Math.min(limits.maxConnectionsPerAddress, limits.maxConnections - Math.ceil(limits.maxConnections / 4)),
  );
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
}

/** Tracks the sockets requests arrive on and the HTTP/2 sessions, closing idle sessions. */
function trackConnections(outer: net.Server, h2: Servers["h2"], options: ServerOptions, open: OpenConnections): void {
  // Plain TCP sockets, or TLS sockets once handshaken.
  outer.on(options.tls === undefined ? "connection" : "secureConnection", (socket: net.Socket) => {
    // No Nagle: an answer is several small writes (HTTP/2 HEADERS, DATA, trailers); waiting to
    // coalesce them meets the peer's delayed ACK and stalls every call by tens of milliseconds.
    socket.setNoDelay(true);
    if ((socket as { alpnProtocol?: string | false }).alpnProtocol === "h2") open.h2Sockets.add(socket);
    open.sockets.add(socket);
    socket.once("close", () => open.sockets.delete(socket));
  });
  h2.on("session", (s: http2.Http2Session) => {
    // An idle connection is closed; one whose streams trickle is ended by each stream's deadline.
    s.setTimeout(options.limits.idleTimeoutMs, () => s.destroy());
    open.sessions.add(s);
    s.once("close", () => open.sessions.delete(s));
  });
}

function listen(outer: net.Server, options: ServerOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    outer.once("error", reject);
    const own = options.reusePort === true ? { exclusive: true, reusePort: true } : {};
    outer.listen({ port: options.port, host: options.host, ...own }, () => {
      outer.off("error", reject);
      resolve();
    });
  });
}

/**
 * Stops accepting and lets in-flight requests finish, cutting the rest at `timeoutMs` or when
 * `hurry` is aborted; resolves once every connection has ended.
 */
async function drainAndClose(
  outer: net.Server,
  open: OpenConnections,
  timeoutMs: number,
  hurry: AbortSignal | undefined,
): Promise<void> {
  open.shuttingDown = true;
  const closed = new Promise<void>((resolve) => outer.close(() => resolve()));
  // HTTP/2: GOAWAY, open streams finish. HTTP/1.1: idle keep-alive sockets close now, busy
  // ones after their response (which says `connection: close`).
  for (const s of open.sessions) s.close();
  for (const socket of open.sockets) {
    if (!open.h2Sockets.has(socket) && !open.inflight.has(socket)) socket.end();
  }
  const cutShort = () => {
    for (const s of open.sessions) s.destroy();
    for (const s of open.sockets) s.destroy();
  };
  const deadline = setTimeout(cutShort, timeoutMs);
  if (hurry?.aborted) cutShort();
  else hurry?.addEventListener("abort", cutShort, { once: true });
  await closed;
  clearTimeout(deadline);
  hurry?.removeEventListener("abort", cutShort);
}

type NodeListener = (req: NodeRequest, res: NodeResponse) => void;

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
