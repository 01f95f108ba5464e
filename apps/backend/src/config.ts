import {
  loadConfig,
  logLevel,
  metricsPort,
  nodeEnv,
  port,
  shutdownDelayMs,
  shutdownTimeoutMs,
} from "@app/config";
import { z } from "zod";

export const backendConfigSchema = z.object({
  PORT: port(3001),
  METRICS_PORT: metricsPort,
  NODE_ENV: nodeEnv,
  LOG_LEVEL: logLevel,
  SHUTDOWN_TIMEOUT_MS: shutdownTimeoutMs,
  SHUTDOWN_DELAY_MS: shutdownDelayMs,
});

export type BackendConfig = z.infer<typeof backendConfigSchema>;

export const loadBackendConfig = (env?: Record<string, string | undefined>): BackendConfig =>
  loadConfig("backend", backendConfigSchema, env);
