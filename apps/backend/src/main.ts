import { loadConfigOrExit } from "@app/config";
import { createLogger, runServer } from "@app/server";
import { createBackendApp } from "./app.ts";
import { loadBackendConfig } from "./config.ts";

const config = loadConfigOrExit(() => loadBackendConfig());

const logger = createLogger({ name: "backend", level: config.LOG_LEVEL });
const app = createBackendApp({ logger, exposeErrors: config.NODE_ENV === "development" });
await runServer({
  app,
  port: config.PORT,
  metricsPort: config.METRICS_PORT,
  logger,
  shutdownTimeoutMs: config.SHUTDOWN_TIMEOUT_MS,
  shutdownDelayMs: config.SHUTDOWN_DELAY_MS,
});
