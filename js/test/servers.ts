// The Python bench app (mcp_ws/bench/app.py) over mcp-ws and over the SDK's streamable
// HTTP, each in a process of its own: the same MCPServer behind both transports.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

import { spawnPython, stopChild } from "./server.js";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));

export interface BenchServer {
  url: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** `python -m mcp_ws.bench ws` (it serves until its stdin closes): resolves with its URL. */
export async function benchWs(): Promise<BenchServer> {
  const server = await spawnPython(["-m", "mcp_ws.bench", "ws"], /^(\S+)\n/, true);
  return { url: server.found, stop: () => server.stop() };
}

/** `python -m mcp_ws.bench http PORT`: resolves once it answers, with its /mcp URL. */
export async function benchHttp(): Promise<BenchServer> {
  const port = await freePort();
  const child = spawn(process.env["PYTHON"] ?? "python", ["-m", "mcp_ws.bench", "http", String(port)], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "inherit"],
  });
  const url = `http://127.0.0.1:${port}/mcp`;
  const deadline = performance.now() + 30000;
  for (;;) {
    try {
      await fetch(url, { method: "GET" });
      break;
    } catch {
      if (performance.now() > deadline || child.exitCode !== null) throw new Error("the streamable HTTP bench server did not start");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return { url, stop: () => stopChild(child) };
}
