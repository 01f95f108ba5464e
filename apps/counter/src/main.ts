import { loadConfigOrExit } from "@app/config";
import { createLogger, runServer } from "@app/server";
import { counterReadiness, createCounterApp } from "./app.ts";
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
// Ready once PostgreSQL accepts the counter's role and holds the schema this build
// needs; a failure is classified (postgres-errors.ts), logged once per change, and its
// reason is /readyz's body. Redis is reported, but optional.
const checks = {
  postgres: () => counter.health.check(() => postgres.checkSchema()),
  redis: () => cache.ping(),
};

const app = createCounterApp({
  counter,
  logger,
  readiness: checks,
  exposeErrors: config.NODE_ENV === "development",
});

await runServer({
  app,
  port: config.PORT,
  metricsPort: config.METRICS_PORT,
  // The API port opens only once these pass: until then Nginx's connections are refused
  // and retried on a replica that is ready (run-server.ts).
  readiness: counterReadiness(checks),
  logger,
  shutdownTimeoutMs: config.SHUTDOWN_TIMEOUT_MS,
  shutdownDelayMs: config.SHUTDOWN_DELAY_MS,
  // In-flight requests have drained (each within its deadline): nothing is pending.
  onShutdown: [() => cache.close(), () => postgres.close()],
});
