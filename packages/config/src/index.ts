export { logLevel, nodeEnv, port, shutdownTimeoutMs } from "./fields.ts";
export { ConfigError, loadConfig, loadConfigOrExit } from "./load-config.ts";
