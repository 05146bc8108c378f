/** HELLO settings: defaults, validation, and the map sent on the wire (docs/protocol.md section 4). */
import { MAX_WINDOW } from "./constants.js";
import { ProtocolError } from "./errors.js";

/** What one side allows its peer to do toward it. */
export interface Settings {
  version: number;
  max_streams: number;
  initial_window: number;
  connection_window: number;
  max_frame_size: number;
  max_message_size: number;
  /** Seconds; 0 turns keepalive off. */
  ping_interval: number;
  extensions: string[];
}

export const MIN_WINDOW = 16384;
export const MIN_FRAME_SIZE = 16384;

export const DEFAULT_SETTINGS: Readonly<Settings> = Object.freeze({
  version: 1,
  max_streams: 128,
  initial_window: 262144,
  connection_window: 4194304,
  max_frame_size: 65536,
  max_message_size: 16777216,
  ping_interval: 15,
  extensions: [],
});

const RANGES: Record<string, [number, number]> = {
  version: [1, 2 ** 31 - 1],
  max_streams: [1, 2 ** 31 - 1],
  initial_window: [MIN_WINDOW, MAX_WINDOW],
  connection_window: [MIN_WINDOW, MAX_WINDOW],
  max_frame_size: [MIN_FRAME_SIZE, 16777215],
  max_message_size: [1024, 2 ** 32 - 1],
};

function problem(values: Record<string, unknown>): string | undefined {
  for (const [key, [lo, hi]] of Object.entries(RANGES)) {
    if (!(key in values)) continue;
    const v = values[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) {
      return `${key} must be an integer in ${lo}..${hi}, got ${String(v)}`;
    }
  }
  if ("ping_interval" in values) {
    const v = values["ping_interval"];
    if (typeof v !== "number" || !(v >= 0 && v <= 86400)) {
      return `ping_interval must be a number of seconds in 0..86400, got ${String(v)}`;
    }
  }
  if ("extensions" in values) {
    const ext = values["extensions"];
    if (!Array.isArray(ext) || ext.length > 64) return "extensions must be a list of at most 64 strings";
    if (!ext.every((name) => typeof name === "string" && name.length <= 256)) {
      return "extensions must hold strings of at most 256 characters";
    }
  }
  return undefined;
}

/** Our settings: the defaults with `overrides`; throws `RangeError` for bad values. */
export function makeSettings(overrides: Partial<Settings> = {}): Settings {
  const settings = { ...DEFAULT_SETTINGS, extensions: [...DEFAULT_SETTINGS.extensions], ...overrides };
  const bad = problem(settings as unknown as Record<string, unknown>);
  if (bad) throw new RangeError(bad);
  return settings;
}

/** Settings from a peer's HELLO map: unknown keys ignored, bad values a `ProtocolError`. */
export function settingsFromWire(raw: Map<unknown, unknown> | Record<string, unknown>): Settings {
  const values: Record<string, unknown> = {};
  const entries = raw instanceof Map ? [...raw.entries()] : Object.entries(raw);
  for (const [key, value] of entries) {
    if (typeof key === "string" && key in DEFAULT_SETTINGS) values[key] = value;
  }
  const bad = problem(values);
  if (bad) throw new ProtocolError(`bad HELLO: ${bad}`);
  const settings = { ...DEFAULT_SETTINGS, ...values } as Settings;
  settings.extensions = [...settings.extensions];
  settings.version = Math.min(settings.version, 1); // a higher version speaks ours
  return settings;
}

/** The HELLO map for `settings`. */
export function settingsToWire(settings: Settings): Record<string, unknown> {
  return { ...settings, extensions: [...settings.extensions] };
}

/** The most bytes a receiver with `settings` ever holds for its application (section 6). */
export function receiveMemoryBound(settings: Settings): number {
  return (
    2 * settings.max_streams * settings.initial_window +
    settings.connection_window +
    4 * settings.max_message_size
  );
}
