// The chat page's script (mcp_ws/web/index.html): connect with the TypeScript client's
// browser bundle, list the tools that stream, render each answer as its tokens arrive.
import { Client, McpWsTransport, streamTool } from "./mcp-ws-client.browser.js";

const $ = (id) => document.getElementById(id);
const STREAMING = "io.github.mcp-ws/streaming";
const path = document.querySelector('meta[name="mcp-ws-path"]').content;
const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
const chat = { client: undefined, tools: [], current: undefined };
window.mcpWsChat = { chat, streamTool }; // for the curious (and the browser tests)

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
  const turn = document.createElement("article");
  turn.className = "turn";
  turn.dataset.state = "streaming";
  const asked = document.createElement("p");
  asked.className = "prompt";
  asked.textContent = `${tool.name}${prompt ? `: ${prompt}` : ""}`;
  const answer = document.createElement("div");
  answer.className = "answer";
  const meta = document.createElement("p");
  meta.className = "meta";
  turn.append(asked, answer, meta);
  $("log").append(turn);
  $("prompt").value = "";
  $("send").disabled = true;
  $("stop").disabled = false;
  const started = performance.now();
  let first;
  let tokens = 0;
  const stream = streamTool(chat.client, tool.name, argumentsFor(tool, prompt));
  chat.current = stream;
  try {
    for await (const event of stream) {
      if (event.type === "delta") {
        first ??= performance.now() - started;
        tokens += 1;
        render(answer, event);
        const seconds = (performance.now() - started) / 1000;
        $("figures").textContent = `first token ${first.toFixed(0)} ms · ${(tokens / seconds).toFixed(0)} tokens/s`;
        turn.scrollIntoView({ block: "end" });
      } else if (event.type === "completed") {
        turn.dataset.state = "completed";
        meta.textContent = `done: ${tokens} tokens, first after ${(first ?? 0).toFixed(0)} ms`;
      } else if (event.type === "failed") {
        turn.dataset.state = "failed";
        meta.textContent = event.error.name === "CallCancelledError" ? "stopped" : `failed: ${event.error.message}`;
      }
    }
  } finally {
    chat.current = undefined;
    idle(Boolean(chat.client));
  }
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
connect();
