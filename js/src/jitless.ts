/**
 * Imported first by the browser bundle (src/browser.ts), before the MCP SDK defines its
 * zod schemas: zod decides at schema definition whether it may compile parsers with
 * `new Function`, probing for it unless `jitless` is set, and a page with a strict
 * Content-Security-Policy (the chat page) reports that probe as a console error even
 * though zod catches it. `jitless` skips the probe and the compiled parsers.
 */
import { config } from "zod/v4/core";

config({ jitless: true });
