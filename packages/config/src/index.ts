export { logLevel, nodeEnv, port, shutdownTimeoutMs } from "./fields.ts";
export { ConfigError, loadConfig } from "./load-config.ts";
