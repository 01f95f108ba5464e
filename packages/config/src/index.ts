export { logLevel, nodeEnv, port, shutdownDelayMs, shutdownTimeoutMs } from "./fields.ts";
export { ConfigError, loadConfig, loadConfigOrExit } from "./load-config.ts";
