// The Python test app (tests/apps.py) served over mcp-ws in a process of its own, for the
// interop tests. PYTHON names the interpreter (default: `python`, the active venv's).
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import WebSocket from "ws";

import { McpWsTransport, type McpWsTransportOptions, type WebSocketConstructor } from "../src/index.js";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));

export interface PythonServer {
  url: string;
  process: ChildProcess;
  /** What the server wrote to stderr so far. */
  log(): string;
  stop(): Promise<void>;
}

/** Start `python -m tests.apps SECONDS BACKEND ARGS`; resolves with its URL. */
export async function startServer(args: string[] = [], seconds = 120): Promise<PythonServer> {
  const python = process.env["PYTHON"] ?? "python";
  const child = spawn(python, ["-m", "tests.apps", String(seconds), "asyncio", ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start:\n${stderr}`)), 20000);
    let out = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split("\n")[0];
      if (out.includes("\n") && line) {
        clearTimeout(timer);
        resolve(line.trim());
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited with ${code}:\n${stderr}`));
    });
  });
  return {
    url,
    process: child,
    log: () => stderr,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/** An SDK `Client` connected to `url` over `McpWsTransport` (with the `ws` package). */
export async function connectClient(
  url: string,
  options: McpWsTransportOptions = {},
  capabilities: Record<string, unknown> = {},
): Promise<{ client: Client; transport: McpWsTransport }> {
  const transport = new McpWsTransport(url, { WebSocket: WebSocket as unknown as WebSocketConstructor, ...options });
  const client = new Client({ name: "interop", version: "0.0.0" }, { capabilities });
  await client.connect(transport);
  return { client, transport };
}

/** The text of a tool result. */
export function textOf(result: unknown): string {
  const content = (result as { content?: { type: string; text?: string }[] }).content ?? [];
  return content.map((b) => (b.type === "text" ? (b.text ?? "") : "")).join("");
}

/** Poll `check` every 20 ms until it holds (at most 10 s). */
export async function waitFor(check: () => Promise<boolean>): Promise<void> {
  const deadline = performance.now() + 10000;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
