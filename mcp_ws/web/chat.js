// The chat page's script (mcp_ws/web/index.html): connect with the TypeScript client's
// browser bundle, list the tools that stream, render each answer as its tokens arrive.
// The answer in progress is kept in localStorage (its handle, the text shown and the seq
// of its last token): a reload shows it at once and reads on by the handle
// (docs/streaming.md, "Re-attach"), and another tab opened meanwhile picks it up too.
import { Client, McpWsTransport, attachStream, streamTool } from "./mcp-ws-client.browser.js";

const $ = (id) => document.getElementById(id);
const STREAMING = "io.github.mcp-ws/streaming";
const path = document.querySelector('meta[name="mcp-ws-path"]').content;
const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
const chat = { client: undefined, tools: [], current: undefined, kept: undefined };
window.mcpWsChat = { chat, streamTool, attachStream }; // for the curious (and the browser tests)
const KEPT = "mcp-ws-chat:answer"; // {handle, asked, text, lastSeq, tokens}
const SAVE_EVERY_MS = 200;
let savedAt = 0;

function keep(entry, now = false) {
  chat.kept = entry;
  if (!now && performance.now() - savedAt < SAVE_EVERY_MS) return; // and on pagehide
  savedAt = performance.now();
  try {
    localStorage.setItem(KEPT, JSON.stringify(entry));
  } catch {
    // storage full or off: a reload then starts afresh
  }
}

function kept() {
  try {
    const entry = JSON.parse(localStorage.getItem(KEPT) ?? "null");
    return typeof entry?.handle === "string" && Number.isInteger(entry?.lastSeq) ? entry : undefined;
  } catch {
    return undefined;
  }
}

function forget(handle) {
  if (chat.kept?.handle === handle) chat.kept = undefined;
  if (kept()?.handle === handle) localStorage.removeItem(KEPT);
}

function status(text, state) {
  $("status").textContent = text;
  $("status").dataset.state = state;
}

function problem(text) {
  $("problem-text").textContent = text;
  $("problem").hidden = !text;
}

function idle(connected) {
  $("send").disabled = !connected || chat.tools.length === 0;
  $("stop").disabled = true;
}

async function connect() {
  problem("");
  status("connecting…", "connecting");
  idle(false);
  await chat.client?.close().catch(() => {});
  const token = $("token").value || new URLSearchParams(location.hash.slice(1)).get("token") || undefined;
  const client = new Client({ name: "mcp-ws chat page", version: "1.0.0" });
  const transport = new McpWsTransport(url, token ? { token } : {});
  const lost = () => {
    if (chat.client !== client) return;
    status("disconnected", "down");
    problem("The connection to the server was lost.");
    chat.current?.cancel("the connection was lost");
    idle(false);
  };
  transport.onclose = lost;
  transport.onconnectionlost = lost; // (a server going away gracefully is handed over)
  // A dropped link is resumed: the answer in progress goes on where it was.
  transport.onlinkstate = (state) => {
    if (chat.client !== client) return;
    if (state === "recovering") status("reconnecting…", "reconnecting");
    else if (state === "recovered") status(`connected to ${url}`, "connected");
  };
  try {
    await client.connect(transport);
  } catch (error) {
    status("not connected", "down");
    $("token").closest("details").open = true;
    problem(`Could not connect to ${url}: the server refused the connection or is not running. If it requires a token, enter it under Connection. (${error.message})`);
    return;
  }
  chat.client = client;
  const { tools } = await client.listTools();
  const streaming = tools.filter((t) => t._meta?.[STREAMING]);
  chat.tools = streaming.length ? streaming : tools;
  $("tool").replaceChildren(...chat.tools.map((t) => new Option(t.title || t.name, t.name)));
  status(`connected to ${url}`, "connected");
  idle(true);
  $("prompt").focus();
  const entry = kept();
  if (entry && !chat.current) await readOn(entry);
}

function argumentsFor(tool, prompt) {
  const schema = tool.inputSchema ?? {};
  const properties = schema.properties ?? {};
  const textual = Object.keys(properties).find((k) => properties[k].type === "string");
  return textual ? { [textual]: prompt } : {};
}

async function send() {
  const tool = chat.tools.find((t) => t.name === $("tool").value);
  if (!tool || !chat.client || chat.current) return;
  const prompt = $("prompt").value.trim();
  const asked = `${tool.name}${prompt ? `: ${prompt}` : ""}`;
  $("prompt").value = "";
  await follow(streamTool(chat.client, tool.name, argumentsFor(tool, prompt)), newTurn(asked), asked);
}

/** Read on the answer a reload (or another tab) left in progress, by its handle. */
async function readOn(entry) {
  const turn = chat.resumed ?? newTurn(entry.asked);
  chat.resumed = undefined;
  turn.answer.replaceChildren(document.createTextNode(entry.text)); // another tab may be further
  await follow(attachStream(chat.client, entry.handle, { after: entry.lastSeq }), turn, entry.asked, entry);
}

function newTurn(asked, text = "") {
  const turn = document.createElement("article");
  turn.className = "turn";
  turn.dataset.state = "streaming";
  const question = document.createElement("p");
  question.className = "prompt";
  question.textContent = asked;
  const answer = document.createElement("div");
  answer.className = "answer";
  if (text) answer.append(document.createTextNode(text));
  const meta = document.createElement("p");
  meta.className = "meta";
  turn.append(question, answer, meta);
  $("log").append(turn);
  return { turn, answer, meta };
}

async function follow(stream, { turn, answer, meta }, asked, entry) {
  $("send").disabled = true;
  $("stop").disabled = false;
  const started = performance.now();
  let first;
  let tokens = entry?.tokens ?? 0;
  let handle = entry?.handle;
  chat.current = stream;
  try {
    for await (const event of stream) {
      if (event.type === "start" && event.handle) {
        handle = event.handle;
        keep({ handle, asked, text: answer.textContent, lastSeq: stream.lastSeq, tokens }, true);
      } else if (event.type === "delta") {
        first ??= performance.now() - started;
        tokens += 1;
        render(answer, event);
        if (handle) keep({ handle, asked, text: answer.textContent, lastSeq: stream.lastSeq, tokens });
        const seconds = (performance.now() - started) / 1000;
        $("figures").textContent = `first token ${first.toFixed(0)} ms · ${(tokens / seconds).toFixed(0)} tokens/s`;
        turn.scrollIntoView({ block: "end" });
      } else if (event.type === "completed") {
        turn.dataset.state = "completed";
        meta.textContent = `done: ${tokens} tokens, first after ${(first ?? 0).toFixed(0)} ms`;
      } else if (event.type === "failed") {
        turn.dataset.state = "failed";
        meta.textContent = failure(event.error);
      }
    }
  } finally {
    if (handle && turn.dataset.state !== "streaming") forget(handle);
    chat.current = undefined;
    idle(Boolean(chat.client));
  }
}

function failure(error) {
  if (error.name === "CallCancelledError") return "stopped";
  if (error.code === -32003) return "stopped";
  if (error.code === -32005) return "this answer is no longer kept by the server";
  if (error.code === -32006) return "the rest of this answer is no longer kept by the server";
  return `failed: ${error.message}`;
}

function render(answer, event) {
  for (const block of event.content ?? []) {
    if (block.type === "text") answer.append(document.createTextNode(block.text));
    else if (block.type === "image") {
      const img = document.createElement("img");
      img.src = `data:${block.mimeType};base64,${block.data}`;
      img.alt = "an image the tool produced";
      answer.append(img);
    }
  }
  if (event.structuredContent !== undefined) {
    const pre = document.createElement("pre");
    pre.textContent = JSON.stringify(event.structuredContent, null, 2);
    answer.append(pre);
  }
}

function stop() {
  chat.current?.cancel("stopped by the user");
}

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    send();
  }
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") stop();
});
$("stop").addEventListener("click", stop);
$("retry").addEventListener("click", connect);
$("connect").addEventListener("click", connect);
addEventListener("pagehide", () => {
  if (chat.kept) keep(chat.kept, true); // the latest token shown, for a reload
});
const left = kept();
if (left) chat.resumed = newTurn(left.asked, left.text); // the answer so far, at once
connect();
