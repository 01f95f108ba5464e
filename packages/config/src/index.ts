export {
  logLevel,
  metricsPort,
  nodeEnv,
  port,
  positiveDuration,
  shutdownDelayMs,
  shutdownTimeoutMs,
} from "./fields.ts";
export { ConfigError, loadConfig, loadConfigOrExit } from "./load-config.ts";
