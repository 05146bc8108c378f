// The chat page (mcp_ws/web) in real headless Chromium (Debian's /usr/bin/chromium driven
// by playwright-core), against `mcp-ws demo --web` / `mcp-ws serve --web` on loopback.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, afterEach, before, describe, test } from "node:test";

import { type BrowserContext, type Page, chromium } from "playwright-core";

import { CutRelay } from "./relay.js";
import { connectClient, spawnPython, textOf } from "./server.js";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const SCREENSHOT = join(ROOT, "docs", "chat-page.png");
/** Poll page conditions on a timer: the default, requestAnimationFrame, stalls in a tab
 * that is not in front (the first of two tabs). */
const POLL = { polling: 20, timeout: 20000 };

interface Served {
  page: string;
  ws: string;
  stop(): Promise<void>;
}

/** `python -m mcp_ws ARGS` until it prints its page URL. */
async function serve(args: string[]): Promise<Served> {
  const server = await spawnPython(["-m", "mcp_ws", ...args], /(http:\/\/127\.0\.0\.1:\d+\/)/);
  return { page: server.found, ws: `${server.found.replace("http://", "ws://")}mcp`, stop: () => server.stop() };
}

let browser: BrowserContext;
let profile: string;

before(async () => {
  profile = mkdtempSync(join(tmpdir(), "mcp-ws-chromium-")); // a fresh --user-data-dir
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env["CHROMIUM"] ?? "/usr/bin/chromium",
    headless: true,
    viewport: { width: 900, height: 640 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
});

/** Console errors and failed requests of every page, checked after each test (`clean`). */
const problems: string[] = [];

/**
 * A new page on `url`, watched: a page error fails at once; console errors (but those
 * matching `expected`, which the test provokes) and HTTP errors fail the test afterwards.
 */
async function openChat(url: string, expected?: RegExp): Promise<Page> {
  const page = await browser.newPage();
  page.on("pageerror", (error) => assert.fail(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && !expected?.test(message.text())) problems.push(`console error: ${message.text()}`);
  });
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()} for ${response.url()}`);
  });
  await page.goto(url);
  return page;
}

/** After each test: no page logged a console error or got an HTTP error. */
function clean(): void {
  assert.deepEqual(problems.splice(0), []);
}

async function connected(page: Page): Promise<void> {
  await page.waitForSelector('#status[data-state="connected"]', { timeout: 10000 });
}

/** Type `prompt` for the chat tool and press Enter. */
async function ask(page: Page, prompt: string): Promise<void> {
  await page.selectOption("#tool", "chat");
  await page.fill("#prompt", prompt);
  await page.press("#prompt", "Enter");
}

/** The server's view of the last chat call: how many tokens it sent, and whether it was cancelled. */
async function serverProgress(ws: string): Promise<{ sent: number; cancelled: boolean }> {
  const { client } = await connectClient(ws);
  try {
    const result = await client.callTool({ name: "progress", arguments: {} });
    return result.structuredContent as { sent: number; cancelled: boolean };
  } finally {
    await client.close();
  }
}

async function until(check: () => Promise<boolean>, ms = 10000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("the chat page", { timeout: 120000 }, () => {
  afterEach(clean);
  let server: Served;
  before(async () => {
    server = await serve(["demo", "--web", "--port", "0"]);
  });
  after(async () => {
    await server.stop();
  });

  test("the answer grows in many visible steps and ends as the tool's result", async () => {
    const page = await openChat(server.page);
    await connected(page);
    const tools = await page.$$eval("#tool option", (options) => options.map((o) => (o as HTMLOptionElement).value));
    assert.deepEqual(tools.sort(), ["answer", "chat", "count", "stream"]); // the tools that stream
    // record every length the answer shows while it streams
    await page.evaluate(() => {
      const seen: number[] = [];
      (window as unknown as { seen: number[] }).seen = seen;
      new MutationObserver(() => {
        const answer = document.querySelector(".turn:last-child .answer");
        if (answer) seen.push(answer.textContent!.length);
      }).observe(document.querySelector("#log")!, { childList: true, subtree: true, characterData: true });
    });
    await ask(page, "why stream?");
    await page.waitForFunction(() => (document.querySelector(".turn .answer")?.textContent ?? "").length > 80, undefined, POLL);
    await page.screenshot({ path: SCREENSHOT }); // mid-answer, for the README
    await page.waitForSelector('.turn[data-state="completed"]', { timeout: 20000 });
    const seen = await page.evaluate(() => (window as unknown as { seen: number[] }).seen);
    const steps = new Set(seen).size;
    assert.ok(steps >= 20, `the answer grew in only ${steps} visible steps`);
    const shown = await page.textContent(".turn .answer");
    const { client } = await connectClient(server.ws);
    const result = await client.callTool({ name: "chat", arguments: { prompt: "why stream?", pace: 0 } });
    await client.close();
    assert.equal(shown, textOf(result));
    assert.match((await page.textContent("#figures")) ?? "", /first token \d+ ms · \d+ tokens\/s/);
    await page.close();
  });

  test("Stop (and Escape) end the call, and the server's handler stops", async () => {
    const page = await openChat(server.page);
    await connected(page);
    await ask(page, "stop me");
    await page.waitForFunction(() => (document.querySelector(".turn .answer")?.textContent ?? "").split(" ").length > 5, undefined, POLL);
    await page.click("#stop");
    await page.waitForSelector('.turn[data-state="failed"]');
    assert.equal(await page.textContent(".turn .meta"), "stopped");
    await until(async () => (await serverProgress(server.ws)).cancelled);
    const { sent } = await serverProgress(server.ws);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal((await serverProgress(server.ws)).sent, sent, "the handler went on after Stop");
    // Escape works the same way
    await ask(page, "escape me");
    await page.waitForFunction(() => (document.querySelectorAll(".turn")[1]?.querySelector(".answer")?.textContent ?? "").length > 20, undefined, POLL);
    await page.keyboard.press("Escape");
    await page.waitForSelector('.turn:nth-child(2)[data-state="failed"]');
    await page.close();
  });

  test("a page that stops reading stalls the producer within one window; other calls answer", async () => {
    const page = await openChat(server.page);
    await connected(page);
    await page.evaluate(async () => {
      const { chat, streamTool } = (window as unknown as { mcpWsChat: { chat: { client: unknown }; streamTool: (...a: unknown[]) => AsyncIterable<unknown> } }).mcpWsChat;
      const iterator = streamTool(chat.client, "stream", { deltas: 1_000_000 })[Symbol.asyncIterator]();
      await iterator.next();
      await iterator.next();
      (window as unknown as { stalled: unknown }).stalled = iterator; // and never pulled again
    });
    let last = -1;
    await until(async () => {
      const { sent } = await serverProgress(server.ws);
      const still = sent === last && sent > 0;
      last = sent;
      await new Promise((resolve) => setTimeout(resolve, 150));
      return still;
    });
    // each delta is about 100 bytes on the wire: one 256 KiB window is about 2,600 of them
    assert.ok(last < 5000, `the producer ran ${last} deltas ahead of a page that stopped reading`);
    const echoed = await page.evaluate(async () => {
      const { chat } = (window as unknown as { mcpWsChat: { chat: { client: { callTool: (p: unknown) => Promise<{ content: { text: string }[] }> } } } }).mcpWsChat;
      return (await chat.client.callTool({ name: "echo", arguments: { text: "still here" } })).content[0]!.text;
    });
    assert.equal(echoed, "still here");
    await page.close();
  });

  test("two tabs are isolated from each other", async () => {
    const [a, b] = [await openChat(server.page), await openChat(server.page)];
    await connected(a);
    await connected(b);
    await ask(a, "alpha");
    await ask(b, "bravo");
    await a.bringToFront();
    await a.waitForFunction(() => (document.querySelector(".turn .answer")?.textContent ?? "").length > 20, undefined, POLL);
    await a.click("#stop");
    await b.bringToFront();
    await b.waitForSelector('.turn[data-state="completed"]', { timeout: 20000 });
    await a.waitForSelector('.turn[data-state="failed"]');
    assert.match((await b.textContent(".turn .answer"))!, /^You asked: bravo\./);
    assert.doesNotMatch((await a.textContent(".turn .answer"))!, /bravo/);
    assert.equal(await a.$$eval(".turn", (turns) => turns.length), 1);
    await a.close();
    await b.close();
  });

  test("a reload mid-answer shows the answer so far at once, reads on, and no token twice", async () => {
    const page = await openChat(server.page);
    await connected(page);
    await ask(page, "reload me");
    await page.waitForFunction(() => (document.querySelector(".turn .answer")?.textContent ?? "").split(" ").length > 12, undefined, POLL);
    // a second tab opened now picks up the same answer and follows it live
    const second = await openChat(server.page);
    await second.waitForFunction(() => (document.querySelector(".turn .answer")?.textContent ?? "").length > 0, undefined, POLL);
    await page.bringToFront();
    const before = (await page.textContent(".turn .answer")) ?? "";
    await page.reload({ waitUntil: "domcontentloaded" });
    // at once: the answer so far is on the page before the connection is even up
    const atOnce = await page.evaluate(() => [document.querySelector(".turn .answer")?.textContent ?? "", document.querySelector("#status")?.getAttribute("data-state")]);
    assert.ok(atOnce[0]!.length > 0 && before.startsWith(atOnce[0]!.slice(0, 20)), `shown at once: ${JSON.stringify(atOnce)}`);
    // record every text the answer shows from now on: it only ever grows
    await page.evaluate(() => {
      const seen: string[] = [];
      (window as unknown as { seen: string[] }).seen = seen;
      new MutationObserver(() => seen.push(document.querySelector(".turn:last-child .answer")?.textContent ?? "")).observe(document.querySelector("#log")!, { childList: true, subtree: true, characterData: true });
    });
    await page.waitForSelector('.turn[data-state="completed"]', { timeout: 30000 });
    await second.bringToFront();
    await second.waitForSelector('.turn[data-state="completed"]', { timeout: 30000 });
    const { client } = await connectClient(server.ws);
    const result = await client.callTool({ name: "chat", arguments: { prompt: "reload me", pace: 0 } });
    await client.close();
    assert.equal(await page.textContent(".turn .answer"), textOf(result)); // nothing lost, nothing twice
    assert.equal(await second.textContent(".turn .answer"), textOf(result));
    const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.startsWith(seen[i - 1]!), "the answer only grew");
    assert.equal(await page.$$eval(".turn", (turns) => turns.length), 1);
    // done: a reload now starts afresh
    await page.reload();
    await connected(page);
    assert.equal(await page.$$eval(".turn", (turns) => turns.length), 0);
    await page.close();
    await second.close();
  });

  test("closing a tab mid-answer leaves the server healthy; Stop after a reload cancels the call", async () => {
    const page = await openChat(server.page);
    await connected(page);
    await ask(page, "close me");
    await page.waitForFunction(() => (document.querySelector(".turn .answer")?.textContent ?? "").length > 20, undefined, POLL);
    await page.close();
    const again = await openChat(server.page); // the answer is picked up where it was
    await connected(again);
    await again.waitForFunction(() => (document.querySelector(".turn .answer")?.textContent ?? "").length > 40, undefined, POLL);
    await again.click("#stop");
    await again.waitForSelector('.turn[data-state="failed"]');
    assert.equal(await again.textContent(".turn .meta"), "stopped");
    await until(async () => (await serverProgress(server.ws)).cancelled);
    await again.reload();
    await connected(again);
    await ask(again, "still alive?");
    await again.waitForSelector('.turn[data-state="completed"]', { timeout: 20000 });
    await again.close();
  });
});

describe("the chat page's security", { timeout: 60000 }, () => {
  afterEach(clean);
  test("with --token the page gets in with the token and is refused without it", async () => {
    const server = await serve(["serve", "mcp_ws.cli.demo_app:build_demo_app", "--web", "--port", "0", "--token", "s3cret"]);
    try {
      const refused = await openChat(server.page, /^WebSocket connection to .* failed: HTTP Authentication failed/);
      await refused.waitForSelector("#problem:not([hidden])");
      assert.match((await refused.textContent("#problem-text"))!, /Could not connect/);
      await refused.fill("#token", "s3cret");
      await refused.click("#retry");
      await connected(refused);
      await refused.close();
      const withHash = await openChat(`${server.page}#token=s3cret`);
      await connected(withHash);
      await withHash.close();
    } finally {
      await server.stop();
    }
  });

  test("a page from an origin that is not allowed is refused", async () => {
    const server = await serve(["serve", "mcp_ws.cli.demo_app:build_demo_app", "--web", "--port", "0", "--allow-origin", "https://chat.example"]);
    try {
      const page = await openChat(server.page, /^WebSocket connection to .* failed: .*Unexpected response code: 403$/);
      await page.waitForSelector("#problem:not([hidden])");
      assert.equal(await page.getAttribute("#status", "data-state"), "down");
      await page.close();
    } finally {
      await server.stop();
    }
  });
});

describe("the chat page with any server", { timeout: 60000 }, () => {
  afterEach(clean);
  test("a link cut mid-answer: the page says reconnecting and the same answer completes once", async () => {
    const server = await serve(["demo", "--web", "--port", "0"]);
    const relay = await new CutRelay(Number(new URL(server.page).port)).listen();
    try {
      const page = await openChat(relay.page());
      await connected(page);
      await page.evaluate(() => {
        const states: string[] = [];
        (window as unknown as { states: string[] }).states = states;
        new MutationObserver(() => states.push(document.querySelector("#status")!.getAttribute("data-state")!)).observe(
          document.querySelector("#status")!,
          { attributes: true, attributeFilter: ["data-state"] },
        );
      });
      await ask(page, "what if the network drops?");
      for (const length of [40, 160]) {
        await page.waitForFunction((n) => (document.querySelector(".turn .answer")?.textContent ?? "").length > n, length, POLL);
        relay.cut();
        await page.waitForSelector('#status[data-state="connected"]', { timeout: 10000 });
      }
      await page.waitForSelector('.turn[data-state="completed"]', { timeout: 30000 });
      const states = await page.evaluate(() => (window as unknown as { states: string[] }).states);
      assert.deepEqual(states, ["reconnecting", "connected", "reconnecting", "connected"]);
      const shown = await page.textContent(".turn .answer");
      const { client } = await connectClient(server.ws);
      const result = await client.callTool({ name: "chat", arguments: { prompt: "what if the network drops?", pace: 0 } });
      await client.close();
      assert.equal(shown, textOf(result)); // every token once, in order
      await page.close();
    } finally {
      await relay.close();
      await server.stop();
    }
  });

  test("images and structured content render; a dropped connection says so and offers to retry", async () => {
    // the Python test app marks no tool as streaming: the page then lists them all
    const server = await serve(["serve", "tests.apps:build_app", "--web", "--port", "0"]);
    try {
      const page = await openChat(server.page, /^WebSocket connection to .* failed: .*net::ERR_CONNECTION_REFUSED$/);
      await connected(page);
      await page.selectOption("#tool", "mixed");
      await page.press("#prompt", "Enter");
      await page.waitForSelector('.turn[data-state="completed"]');
      const image = await page.getAttribute(".turn .answer img", "src");
      assert.equal(image, "data:image/png;base64,AAH/UE5H");
      const structured = await page.$$eval(".turn .answer pre", (pres) => pres.map((p) => JSON.parse(p.textContent!)));
      assert.deepEqual(structured, [{ rows: 1 }, { done: true }]);
      assert.match((await page.textContent(".turn .answer"))!, /^Hello, world/);
      await server.stop();
      await page.waitForSelector("#problem:not([hidden])");
      assert.match((await page.textContent("#problem-text"))!, /connection to the server was lost/);
      assert.equal(await page.getAttribute("#status", "data-state"), "down");
      assert.ok(await page.isVisible("#retry"));
      await page.close();
    } finally {
      await server.stop();
    }
  });
});
