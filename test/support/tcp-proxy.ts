import * as net from "node:net";

export interface TcpProxy {
  port: number;
  /** Refuses new connections and cuts open ones, as a database outage would. */
  down(): Promise<void>;
  /** Listens again on the same port. */
  up(): Promise<void>;
  close(): Promise<void>;
}

/** A loopback TCP forwarder to `target`, which a test can take down and bring back. */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const open = new Set<net.Socket>();
  let server: net.Server;
  let port = 0;
  let listening = false;
  const listen = async () => {
    if (listening) return;
    server = net.createServer((client) => {
      const upstream = net.connect(target.port, target.host);
      open.add(client);
      open.add(upstream);
      client.pipe(upstream).pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        open.delete(client);
        open.delete(upstream);
      };
      client.on("error", drop).on("close", drop);
      upstream.on("error", drop).on("close", drop);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", resolve);
    });
    listening = true;
    port = (server.address() as net.AddressInfo).port;
  };
  const down = async () => {
    if (!listening) return;
    listening = false;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of open) s.destroy();
      open.clear();
    });
  };
  await listen();
  return { port, down, up: listen, close: down };
}
