export { http2Request, tlsHandshake } from "./clients.ts";
export { makeTestPki, type TestPki } from "./pki.ts";
export { eventually } from "./polling.ts";
export { freePort, freePorts } from "./ports.ts";
