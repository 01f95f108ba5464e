export { http2Request, tlsHandshake } from "./clients.ts";
export { machineEnvironment } from "./machine-env.ts";
export { makeTestPki, type TestPki } from "./pki.ts";
export { eventually } from "./polling.ts";
export { freePort, freePorts } from "./ports.ts";
