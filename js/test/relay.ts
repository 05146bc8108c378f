// A TCP relay on loopback that cuts the connections it carries, for the resume tests
// (the twin of tests/cutproxy.py).
import { type Server, type Socket, createServer, connect } from "node:net";

/** A TCP relay on loopback to `port` that cuts every connection it carries on `cut()`,
 * or after a random number of bytes when `budget` is set. */
export class CutRelay {
  readonly server: Server;
  port = 0;
  cuts = 0;
  closed = false;
  budget: [number, number] | undefined;
  private readonly live = new Set<Socket>();
  private seed = 7;

  constructor(public upstream: number) {
    this.server = createServer((client) => this.relay(client));
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  url(): string {
    return `ws://127.0.0.1:${this.port}/mcp`;
  }

  /** The chat page through the relay (its WebSocket then goes through it too). */
  page(): string {
    return `http://127.0.0.1:${this.port}/`;
  }

  /** A deterministic pseudo-random number in [0, 1). */
  private random(): number {
    this.seed = (this.seed * 16807) % 2147483647;
    return this.seed / 2147483647;
  }

  cut(): number {
    const sockets = [...this.live];
    for (const socket of sockets) socket.destroy();
    this.live.clear();
    this.cuts += sockets.length ? 1 : 0;
    return sockets.length / 2;
  }

  private relay(client: Socket): void {
    if (this.closed) {
      client.destroy();
      return;
    }
    const upstream = connect(this.upstream, "127.0.0.1");
    this.live.add(client).add(upstream);
    const pipe = (from: Socket, to: Socket): void => {
      let left = this.budget ? this.budget[0] + Math.floor(this.random() * (this.budget[1] - this.budget[0])) : Infinity;
      from.on("data", (chunk: Buffer) => {
        if (chunk.length >= left) {
          to.write(chunk.subarray(0, left)); // part of a frame, then the cut
          this.cuts += 1;
          client.destroy();
          upstream.destroy();
          return;
        }
        left -= chunk.length;
        to.write(chunk);
      });
      from.on("close", () => to.destroy());
      from.on("error", () => to.destroy());
    };
    pipe(client, upstream);
    pipe(upstream, client);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

