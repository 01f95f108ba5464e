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

// Neither store has to be up for the app to start: the migration runs now or on first
// use, and the cache is used once it answers.
postgres
  .ensureSchema()
  .catch((error: unknown) => logger.warn({ err: error }, "postgres: migration deferred"));

const app = createCounterApp({
  counter,
  logger,
  // Ready once the counter's row can be read (its schema is created again if it is gone).
  readiness: { postgres: async () => void (await postgres.read()), redis: () => cache.ping() },
  exposeErrors: config.NODE_ENV === "development",
});

await runServer({
  app,
  port: config.PORT,
  logger,
  shutdownTimeoutMs: config.SHUTDOWN_TIMEOUT_MS,
  shutdownDelayMs: config.SHUTDOWN_DELAY_MS,
  // In-flight requests have drained (each within its deadline): nothing is pending.
  onShutdown: [() => cache.close(), () => postgres.close()],
});
