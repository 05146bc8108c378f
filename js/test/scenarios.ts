// The shared behaviour scenarios (vectors/scenarios/*.json) run against the TypeScript
// core; tests/scenarios.py runs the same files against the Python core. The format is
// documented in vectors/README.md: this module and that one are its two readers, and they
// must stay line for line alike.
import { readFileSync, readdirSync } from "node:fs";

import { decodeMulti, encode } from "@msgpack/msgpack";

import { type Event, type Limits, Connection } from "../src/connection.js";
import type { ErrorCode } from "../src/constants.js";
import { McpWsError } from "../src/errors.js";
import { type ResumeHello } from "../src/resume.js";
import { type Settings } from "../src/settings.js";

export const SCENARIOS = new URL("../../../vectors/scenarios/", import.meta.url);

/** The wildcard: an expected value that matches anything. */
export const ANY = "*";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Step = { do: string } & Record<string, Json>;
export interface Scenario {
  id: string;
  name: string;
  about: string;
  role: "client" | "server";
  settings?: Record<string, Json>;
  limits?: Record<string, number>;
  start?: Json[] | null;
  resume?: Record<string, Json>;
  peer?: Json;
  steps: Step[];
}

/** Every scenario, in file order, each with its `id` (`area/name`). */
export function load(directory: URL = SCENARIOS): Scenario[] {
  const found: Scenario[] = [];
  for (const file of readdirSync(directory).filter((name) => name.endsWith(".json")).sort()) {
    const document = JSON.parse(readFileSync(new URL(file, directory), "utf8")) as { scenarios: Scenario[] };
    for (const scenario of document.scenarios) {
      found.push({ ...scenario, id: `${file.slice(0, -".json".length)}/${scenario.name}` });
    }
  }
  return found;
}

const pack = (value: unknown): Uint8Array => encode(value);

/**
 * A JSON-RPC message whose MessagePack form is exactly `size` bytes: a notification (or a
 * request with `id`) of method "x" padded with "a"s.
 */
export function messageOfSize(size: number, id?: Json): Record<string, unknown> {
  const build = (pad: number): Record<string, unknown> => {
    const message: Record<string, unknown> = { jsonrpc: "2.0" };
    if (id !== undefined && id !== null) message["id"] = id;
    message["method"] = "x";
    message["params"] = { p: "a".repeat(pad) };
    return message;
  };
  let pad = Math.max(size - pack(build(0)).length, 0);
  while (pad >= 0) {
    const length = pack(build(pad)).length;
    if (length === size) return build(pad);
    if (length < size) break;
    pad -= length - size;
  }
  throw new Error(`no message of exactly ${size} bytes`);
}

function isBinSpec(value: Json): value is Record<string, Json> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && Object.keys(value).some((key) => key.startsWith("$"));
}

/** The bytes a `{"$...": ...}` spec stands for (vectors/README.md, "Payloads"). */
function binOf(spec: Record<string, Json>): Uint8Array {
  if ("$hex" in spec) return new Uint8Array(Buffer.from(spec["$hex"] as string, "hex"));
  if ("$zeros" in spec) return new Uint8Array(spec["$zeros"] as number);
  let data = pack(messageOf(spec));
  if ("$slice" in spec) {
    const [start, end] = spec["$slice"] as [number, number];
    data = data.subarray(start, end);
  }
  return data;
}

/** The JSON-RPC message a `{"$msg": ...}` or `{"$size": N, "$id": ...}` spec names. */
function messageOf(spec: Json | undefined): Record<string, unknown> {
  const s = spec as Record<string, Json>;
  if ("$msg" in s) return { ...(s["$msg"] as Record<string, unknown>) };
  return messageOfSize(s["$size"] as number, s["$id"]);
}

/** A frame field as given in a scenario, with bin specs turned into bytes. */
function valueOf(value: Json): unknown {
  if (isBinSpec(value)) return binOf(value);
  if (Array.isArray(value)) return value.map(valueOf);
  return value;
}

/** What a side sent, as frames: bin fields become `{"$len": N}`. */
function renderFrames(messages: Uint8Array[]): Json[] {
  const frames: Json[] = [];
  for (const message of messages) {
    for (const frame of decodeMulti(message, { useBigInt64: true })) {
      frames.push(
        (frame as unknown[]).map((field) => {
          if (field instanceof Uint8Array) return { $len: field.length };
          if (typeof field === "bigint") return Number(field);
          return field as Json;
        }),
      );
    }
  }
  return frames;
}

/** An event in the neutral form both runners produce. */
function renderEvent(event: Event): Record<string, Json> {
  switch (event.kind) {
    case "hello":
      return { event: "hello" };
    case "opened":
      return { event: "opened", stream: event.streamId };
    case "message": {
      const rendered: Record<string, Json> = { event: "message", stream: event.streamId, size: event.size };
      for (const key of ["id", "method"]) {
        if (key in event.message) rendered[key] = event.message[key] as Json;
      }
      return rendered;
    }
    case "invalid":
      return { event: "invalid", stream: event.streamId };
    case "ended":
      return { event: "ended", stream: event.streamId };
    case "cancelled":
      return { event: "cancelled", stream: event.streamId, code: event.code, remote: event.remote, reason: event.reason };
    case "credit":
      return { event: "credit", stream: event.streamId, increment: event.increment };
    case "pingAck":
      return { event: "ping_ack", opaque: Number(event.opaque) };
    case "goaway":
      return { event: "goaway", last_stream: event.lastStreamId, reason: event.reason };
    case "terminated": {
      const rendered: Record<string, Json> = {
        event: "terminated",
        code: event.code,
        remote: event.remote,
        close_code: event.closeCode,
        last_stream: event.lastStreamId,
        reason: event.reason,
      };
      if (event.sessionLost) rendered["session_lost"] = true;
      return rendered;
    }
    case "resumed":
      return { event: "resumed", resent: event.resent };
    case "linkLost":
      return { event: "link_lost" };
  }
}

/**
 * `expected` matches `actual`: equal, with `"*"` matching anything and a missing `reason`
 * key in an expected map matching any reason.
 */
export function matches(expected: Json | undefined, actual: Json | undefined): boolean {
  if (expected === ANY) return true;
  if (Array.isArray(expected) && Array.isArray(actual)) {
    return expected.length === actual.length && expected.every((item, i) => matches(item, actual[i]));
  }
  if (isMap(expected) && isMap(actual)) {
    const keys = Object.keys(actual).filter((key) => key !== "reason" || "reason" in expected);
    return (
      keys.length === Object.keys(expected).length &&
      keys.every((key) => key in expected && matches(expected[key], actual[key]))
    );
  }
  return expected === actual;
}

function isMap(value: Json | undefined): value is Record<string, Json> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const CAMEL: Record<string, keyof Limits> = {
  cancel_rate: "cancelRate",
  cancel_burst: "cancelBurst",
  ping_rate: "pingRate",
  ping_burst: "pingBurst",
  useless_frame_rate: "uselessFrameRate",
  useless_frame_burst: "uselessFrameBurst",
  max_queued_control: "maxQueuedControl",
  hello_timeout: "helloTimeout",
  recently_closed: "recentlyClosed",
};

const STATES: Record<string, string> = {
  open: "open",
  halfClosedLocal: "half_closed_local",
  halfClosedRemote: "half_closed_remote",
  closed: "closed",
  reset: "reset",
};

/** What one step did: the frames sent after it, its events, its return value and the name of what it threw. */
export interface Outcome {
  frames: Json[];
  events: Json[];
  returned: Json | undefined;
  raised: string | undefined;
  checks: Record<string, Json>;
}

/** One side of a scenario: the core, its fake clock, and the verbs of the format. */
export class Runner {
  now = 0;
  readonly core: Connection;

  constructor(scenario: Scenario) {
    const limits: Partial<Limits> = {};
    for (const [key, value] of Object.entries(scenario.limits ?? {})) {
      const name = CAMEL[key];
      if (name === undefined) throw new Error(`unknown limit ${key}`);
      limits[name] = value;
    }
    const options: ConstructorParameters<typeof Connection>[2] = { limits, clock: () => this.now };
    if (scenario.resume !== undefined) options.resume = scenario.resume as ResumeHello;
    this.core = new Connection(scenario.role, (scenario.settings ?? {}) as Partial<Settings>, options);
  }

  private verb(step: Step): [Event[], Json | undefined] {
    const core = this.core;
    const sid = step["stream"] as number;
    switch (step.do) {
      case "start":
      case "flush":
        return [[], undefined];
      case "receive": {
        const data =
          "hex" in step
            ? new Uint8Array(Buffer.from(step["hex"] as string, "hex"))
            : Buffer.concat((step["frames"] as Json[]).map((frame) => pack(valueOf(frame))));
        return [core.receiveData(new Uint8Array(data)), undefined];
      }
      case "text":
        return [core.receiveText(), undefined];
      case "open":
        return [[], core.openStream(messageOf(step["message"]), (step["end"] as boolean | undefined) ?? false)];
      case "send":
        core.sendMessage(sid, messageOf(step["message"]), (step["end"] as boolean | undefined) ?? false);
        return [[], undefined];
      case "end":
        core.endStream(sid);
        return [[], undefined];
      case "consume":
        return [[], core.acknowledge(sid, step["bytes"] as number)];
      case "cancel":
        core.cancelStream(sid, ((step["code"] as number | undefined) ?? 7) as ErrorCode, (step["reason"] as string | undefined) ?? "");
        return [[], undefined];
      case "close":
        core.close(((step["code"] as number | undefined) ?? 0) as ErrorCode, (step["reason"] as string | undefined) ?? "");
        return [[], undefined];
      case "ping":
        return [[], core.ping()];
      case "advance":
        this.now += step["seconds"] as number;
        return [core.tick(), undefined];
      case "lost":
        return [core.connectionLost(), undefined];
      case "suspend":
        core.suspend();
        return [[], undefined];
      case "begin_resume":
        core.beginResume();
        return [[], undefined];
      case "resume_accepted":
        core.resumeAccepted(step["received"] as number, step["token"] as string);
        return [[], undefined];
      default:
        throw new Error(`unknown verb ${step.do}`);
    }
  }

  step(step: Step): Outcome {
    let events: Event[] = [];
    let returned: Json | undefined;
    let raised: string | undefined;
    try {
      [events, returned] = this.verb(step);
    } catch (error) {
      if (!(error instanceof McpWsError)) throw error;
      raised = error.constructor.name;
    }
    const frames = renderFrames(this.core.dataToSend());
    const checks: Record<string, Json> = {};
    for (const name of Object.keys((step["check"] as Record<string, Json> | undefined) ?? {})) {
      checks[name] = this.check(name, (step["check"] as Record<string, Json>)[name] as Json);
    }
    return {
      frames,
      events: events.map(renderEvent),
      returned,
      raised,
      checks,
    };
  }

  /** The value of one `check` after a step, in the scenario's terms. */
  check(name: string, expected: Json): Json {
    const core = this.core;
    const ids = isMap(expected) ? Object.keys(expected) : [];
    switch (name) {
      case "state":
        return Object.fromEntries(ids.map((id) => [id, STATES[core.streamState(Number(id)) ?? ""] ?? null]));
      case "credit":
        return Object.fromEntries(ids.map((id) => [id, core.availableCredit(Number(id))]));
      case "buffered_received":
        return core.bufferedReceived;
      case "open_streams":
        return core.openStreamCount;
      case "can_open":
        return core.canOpenStream;
      case "connection":
        return { open: "open", goingAway: "going_away", closed: "closed" }[core.state];
      case "deadline":
        return core.nextDeadline() ?? null;
      case "resumable":
        return core.resumable;
      case "position":
        return core.receivedPosition;
      default:
        throw new Error(`unknown check ${name}`);
    }
  }
}

/** The steps, with the scenario's shorthands written out (vectors/README.md). */
export function expand(scenario: Scenario): Step[] {
  const steps: Step[] = [];
  // null: the first step finds our HELLO unsent
  if (scenario.start !== null) steps.push({ do: "start", sends: scenario.start ?? [[0, 0, 0, ANY]] });
  if (scenario.peer !== undefined) {
    steps.push({ do: "receive", frames: [[0, 0, 0, scenario.peer]], events: [{ event: "hello" }] });
  }
  return [...steps, ...scenario.steps];
}

/** Run a scenario: the differences from its expectations, one line each (none: it passed). */
export function run(scenario: Scenario): string[] {
  const runner = new Runner(scenario);
  const steps = expand(scenario);
  for (const [index, step] of steps.entries()) {
    const outcome = runner.step(step);
    const where = `step ${index} (${step.do})`;
    const problems: string[] = [];
    if (outcome.raised !== step["raises"]) problems.push(`${where}: raised ${outcome.raised}, expected ${String(step["raises"])}`);
    if ("returns" in step && !matches(step["returns"], outcome.returned)) {
      problems.push(`${where}: returned ${JSON.stringify(outcome.returned)}, expected ${JSON.stringify(step["returns"])}`);
    }
    if (!matches(step["sends"] ?? [], outcome.frames)) problems.push(`${where}: sent ${JSON.stringify(outcome.frames)}`);
    if (!matches(step["events"] ?? [], outcome.events)) problems.push(`${where}: events ${JSON.stringify(outcome.events)}`);
    for (const [name, value] of Object.entries(outcome.checks)) {
      if (!matches((step["check"] as Record<string, Json>)[name], value)) problems.push(`${where}: ${name} is ${JSON.stringify(value)}`);
    }
    if (problems.length) return problems;
  }
  return [];
}
