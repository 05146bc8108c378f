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

/** A Python process of the repository's, running until `stop`. */
export interface PythonProcess {
  /** The first match of the pattern `spawnPython` waited for. */
  found: string;
  process: ChildProcess;
  /** What it wrote to stderr so far. */
  log(): string;
  /** SIGTERM (SIGKILL with `kill`), then wait for the exit. */
  stop(kill?: boolean): Promise<void>;
}

/** `python ARGS` from the repository root, until its stdout matches `pattern` (its first
 * group is `found`); PYTHON names the interpreter (default: `python`, the active venv's). */
export async function spawnPython(args: string[], pattern: RegExp, keepStdin = false): Promise<PythonProcess> {
  const child = spawn(process.env["PYTHON"] ?? "python", args, {
    cwd: ROOT,
    stdio: [keepStdin ? "pipe" : "ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const found = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`python ${args.join(" ")} did not start:\n${stderr}`)), 20000);
    let out = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const match = pattern.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`python ${args.join(" ")} exited with ${code}:\n${stderr}`));
    });
  });
  return {
    found,
    process: child,
    log: () => stderr,
    stop: (kill = false) => stopChild(child, kill),
  };
}

/** SIGTERM `child` (SIGKILL with `kill`, or after 5 s) and wait for it to exit. */
export async function stopChild(child: ChildProcess, kill = false): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill(kill ? "SIGKILL" : "SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}

export interface PythonServer {
  url: string;
  process: ChildProcess;
  /** What the server wrote to stderr so far. */
  log(): string;
  stop(): Promise<void>;
}

/** Start `python -m tests.apps SECONDS asyncio ARGS`; resolves with its URL. Stopped by SIGKILL. */
export async function startServer(args: string[] = [], seconds = 120): Promise<PythonServer> {
  const app = await spawnPython(["-m", "tests.apps", String(seconds), "asyncio", ...args], /^(\S+)\n/);
  return { url: app.found, process: app.process, log: app.log, stop: () => app.stop(true) };
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
