/**
 * The browser bundle's entry (dist/mcp-ws-client.browser.js): everything in the package,
 * plus the MCP TypeScript SDK's `Client`, so one `<script type="module">` import is enough.
 */
export * from "./index.js";
export { Client } from "@modelcontextprotocol/sdk/client/index.js";
