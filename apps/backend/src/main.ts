import { ConfigError } from "@app/config";
import { createLogger, runServer } from "@app/server";
import { createBackendApp } from "./app.ts";
import { type BackendConfig, loadBackendConfig } from "./config.ts";

let config: BackendConfig;
try {
  config = loadBackendConfig();
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(error.message);
  process.exit(1);
}

const logger = createLogger({ name: "backend", level: config.LOG_LEVEL });
const app = createBackendApp({ logger, exposeErrors: config.NODE_ENV === "development" });
await runServer({ app, port: config.PORT, logger, shutdownTimeoutMs: config.SHUTDOWN_TIMEOUT_MS });
