import { loadConfigOrExit } from "@app/config";
import { createLogger, runServer } from "@app/server";
import { createCounterApp } from "./app.ts";
import { loadCounterConfig } from "./config.ts";
import { PostgresStore } from "./postgres-store.ts";
import { RedisCache } from "./redis-cache.ts";
import { VisitCounter } from "./visit-counter.ts";

const config = loadConfigOrExit(() => loadCounterConfig());

const logger = createLogger({ name: "counter", level: config.LOG_LEVEL });

const postgres = new PostgresStore(config, logger);
const cache = new RedisCache(config, logger);
const counter = new VisitCounter({ config, postgres, cache, logger });

// Neither store has to be up for the app to start: PostgreSQL is used once it answers
// (its schema comes from the migrate job, never from here), the cache likewise.

const app = createCounterApp({
  counter,
  logger,
  // Ready once the counter's row can be read.
  readiness: { postgres: async () => void (await postgres.read()), redis: () => cache.ping() },
  exposeErrors: config.NODE_ENV === "development",
});

await runServer({
  app,
  port: config.PORT,
  metricsPort: config.METRICS_PORT,
  logger,
  shutdownTimeoutMs: config.SHUTDOWN_TIMEOUT_MS,
  shutdownDelayMs: config.SHUTDOWN_DELAY_MS,
  // In-flight requests have drained (each within its deadline): nothing is pending.
  onShutdown: [() => cache.close(), () => postgres.close()],
});
