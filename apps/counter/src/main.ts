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

// Neither store has to be up for the app to start: the migration runs now or on first
// use, and the cache is used once it answers.
postgres
  .ensureSchema()
  .catch((error: unknown) => logger.warn({ err: error }, "postgres: migration deferred"));

// STAND-IN for gates-migrate's `PostgresStore.checkSchema()` (issue 32's shared contract:
// resolves when the schema is at least this build's and the counter row exists, else
// throws with `code` SCHEMA_MISSING, SCHEMA_OUTDATED or COUNTER_ROW_MISSING). The lead
// replaces this line with `() => postgres.checkSchema()` at the merge.
const checkSchema = async (): Promise<void> => void (await postgres.read());

// Ready once PostgreSQL accepts the counter's role and holds the schema this build
// needs; a failure is classified (postgres-errors.ts), logged once per change, and its
// reason is /readyz's body. Redis is reported, but optional.
const checks = { postgres: () => counter.health.check(checkSchema), redis: () => cache.ping() };

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
