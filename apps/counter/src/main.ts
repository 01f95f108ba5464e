import { setTimeout as delay } from "node:timers/promises";
import { loadConfigOrExit } from "@app/config";
import { createLogger, runServer } from "@app/server";
import { createCounterApp } from "./app.ts";
import { loadCounterConfig } from "./config.ts";
import { PostgresStore } from "./postgres-store.ts";
import { RedisStore } from "./redis-store.ts";
import { VisitCounter } from "./visit-counter.ts";

const config = loadConfigOrExit(() => loadCounterConfig());

const logger = createLogger({ name: "counter", level: config.LOG_LEVEL });

const postgres = new PostgresStore(
  config.COUNTER_ID,
  {
    host: config.POSTGRES_HOST,
    port: config.POSTGRES_PORT,
    user: config.POSTGRES_USER,
    password: config.POSTGRES_PASSWORD,
    database: config.POSTGRES_DB,
    timeoutMs: config.POSTGRES_TIMEOUT_MS,
  },
  logger,
);
const redis = new RedisStore(
  {
    url: config.REDIS_URL,
    password: config.REDIS_PASSWORD,
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
  },
  logger,
);
const counter = new VisitCounter({
  key: config.COUNTER_ID,
  redis,
  postgres,
  logger,
  flushIntervalMs: config.FLUSH_INTERVAL_MS,
  recoveryWindowMs: config.REDIS_RECOVERY_WINDOW_MS,
  requestTtlSeconds: config.IDEMPOTENCY_KEY_TTL_SECONDS,
});

// The app starts with whichever store is up, and the clients keep reconnecting in
// the background. Redis gets a moment first: a replica that joins running peers
// should count where they count, not in PostgreSQL because it was still connecting.
const redisConnected = redis
  .connect()
  .catch((error: unknown) => logger.warn({ err: error }, "redis: first connect failed"));
postgres
  .ensureSchema()
  .catch((error: unknown) => logger.warn({ err: error }, "postgres: migration deferred"));
await Promise.race([redisConnected, delay(2_000)]);
counter.start();

const app = createCounterApp({
  counter,
  logger,
  readiness: { redis: () => redis.ping(), postgres: () => postgres.ping() },
  exposeErrors: config.NODE_ENV === "development",
});

await runServer({
  app,
  port: config.PORT,
  logger,
  shutdownTimeoutMs: config.SHUTDOWN_TIMEOUT_MS,
  onShutdown: [() => counter.stop(), () => redis.close(), () => postgres.close()],
});
