// From Node: round trip and deltas per second through McpWsTransport, against the same
// Python server (mcp_ws/bench/app.py) reached through the TypeScript SDK's own
// StreamableHTTPClientTransport (progress notifications, how stock MCP streams today),
// in one run, interleaved, as ratios. `npm run bench [-- --quick]`.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import WebSocket from "ws";

import { McpWsTransport, type WebSocketConstructor, streamTool } from "../src/index.js";
import { benchHttp, benchWs } from "../test/servers.js";

const quick = process.argv.includes("--quick");
const ROUND_TRIPS = quick ? 200 : 1000;
const DELTAS = quick ? 2000 : 10000;
const REPEATS = quick ? 1 : 3;

type Figures = { p50: number; p99: number; deltasPerSecond: number };

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function measure(client: Client, streaming: "mcp-ws" | "progress"): Promise<Figures> {
  for (let i = 0; i < 50; i++) await client.callTool({ name: "echo", arguments: { text: "warm" } });
  const times: number[] = [];
  for (let i = 0; i < ROUND_TRIPS; i++) {
    const start = performance.now();
    await client.callTool({ name: "echo", arguments: { text: "x" } });
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  const start = performance.now();
  let deltas = 0;
  if (streaming === "mcp-ws") {
    for await (const event of streamTool(client, "stream", { count: DELTAS })) if (event.type === "delta") deltas++;
  } else {
    await client.callTool({ name: "progress", arguments: { count: DELTAS } }, undefined, {
      onprogress: () => void deltas++,
      timeout: 600000,
    });
  }
  const seconds = (performance.now() - start) / 1000;
  if (deltas !== DELTAS) throw new Error(`${streaming}: ${deltas} of ${DELTAS} deltas arrived`);
  return { p50: percentile(times, 0.5), p99: percentile(times, 0.99), deltasPerSecond: deltas / seconds };
}

async function main(): Promise<void> {
  const ws = await benchWs();
  const http = await benchHttp();
  const runs: Record<string, Figures[]> = { "mcp-ws": [], "streamable HTTP": [] };
  try {
    for (let repeat = 0; repeat < REPEATS; repeat++) {
      for (const label of Object.keys(runs)) {
        const client = new Client({ name: "bench", version: "0" });
        const transport =
          label === "mcp-ws"
            ? new McpWsTransport(ws.url, { WebSocket: WebSocket as unknown as WebSocketConstructor })
            : new StreamableHTTPClientTransport(new URL(http.url));
        await client.connect(transport);
        runs[label]!.push(await measure(client, label === "mcp-ws" ? "mcp-ws" : "progress"));
        await client.close();
        process.stderr.write(`repeat ${repeat + 1}/${REPEATS}: ${label} done\n`);
      }
    }
  } finally {
    await ws.stop();
    await http.stop();
  }
  const m = (label: string, key: keyof Figures) => median(runs[label]!.map((f) => f[key]));
  const rows = [
    ["round trip p50, ms", "p50", 2, false],
    ["round trip p99, ms", "p99", 2, false],
    ["deltas per second", "deltasPerSecond", 0, true],
  ] as const;
  console.log(`Node ${process.version}, ${ROUND_TRIPS} round trips, a ${DELTAS}-delta stream, median of ${REPEATS}`);
  console.log("| figure | mcp-ws | streamable HTTP | mcp-ws / HTTP |");
  console.log("|---|---|---|---|");
  for (const [name, key, digits, higherIsBetter] of rows) {
    const ours = m("mcp-ws", key);
    const theirs = m("streamable HTTP", key);
    const ratio = higherIsBetter ? ours / theirs : ours / theirs;
    console.log(`| ${name} | ${ours.toFixed(digits)} | ${theirs.toFixed(digits)} | ${ratio.toFixed(2)}x |`);
  }
}

await main();
