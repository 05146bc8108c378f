/**
 * The browser bundle's entry (dist/mcp-ws-client.browser.js): everything in the package,
 * plus the MCP TypeScript SDK's `Client`, so one `<script type="module">` import is enough.
 *
 * This `Client` validates JSON schemas with the SDK's eval-free validator (the default one
 * compiles them with `new Function`, which a page with a strict Content-Security-Policy,
 * such as the chat page, forbids). For the same reason the bundle sets zod (the SDK's
 * message schemas) to `jitless`: otherwise zod probes `new Function` on its first parse,
 * and the page's CSP reports the probe as a console error even though zod catches it.
 * `./jitless.js` comes first so that it runs before the SDK's modules define theirs.
 */
import "./jitless.js";
import { Client as SdkClient, type ClientOptions } from "@modelcontextprotocol/sdk/client/index.js";
import { CfWorkerJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/cfworker";
import type { Implementation } from "@modelcontextprotocol/sdk/types.js";

export * from "./index.js";

/** The SDK's `Client`, validating schemas without `eval`. */
export class Client extends SdkClient {
  constructor(info: Implementation, options: ClientOptions = {}) {
    super(info, { jsonSchemaValidator: new CfWorkerJsonSchemaValidator(), ...options });
  }
}
