// The browser bundle: one ES module with no bare imports, which works on its own.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import WebSocket from "ws";

import { startServer, textOf } from "./server.js";

const BUNDLE = new URL("../../dist/mcp-ws-client.browser.js", import.meta.url);

test("the browser bundle imports nothing by a bare name", () => {
  const code = readFileSync(BUNDLE, "utf8");
  const imports = [...code.matchAll(/(?:^|[;\s}])(?:import|export)\s*(?:[\w*{}\s,$]+from\s*)?["']([^"']+)["']/g)].map((m) => m[1]);
  assert.deepEqual(imports.filter((name) => !name!.startsWith(".") && !name!.startsWith("/")), []);
});

test("the bundle alone carries a call and a streamed answer", { timeout: 60000 }, async () => {
  const bundle = (await import(BUNDLE.href)) as typeof import("../src/browser.js");
  const server = await startServer();
  try {
    const client = new bundle.Client({ name: "bundle", version: "0" });
    await client.connect(new bundle.McpWsTransport(server.url, { WebSocket: WebSocket as never }));
    assert.equal(textOf(await client.callTool({ name: "add", arguments: { a: 3, b: 4 } })), "7");
    let text = "";
    for await (const event of bundle.streamTool(client, "generate", { count: 3 })) {
      if (event.type === "delta") text += event.text ?? "";
    }
    assert.equal(text, "t0 t1 t2 ");
    await client.close();
  } finally {
    await server.stop();
  }
});

test("the bundle the Python package ships is the one this build made", () => {
  const shipped = readFileSync(new URL("../../../mcp_ws/web/mcp-ws-client.browser.js", import.meta.url));
  const built = readFileSync(BUNDLE);
  assert.ok(shipped.equals(built), "mcp_ws/web/mcp-ws-client.browser.js is stale: run `npm run web` in js/");
});
