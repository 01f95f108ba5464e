import {
  loadConfig,
  logLevel,
  metricsPort,
  nodeEnv,
  port,
  positiveDuration,
  shutdownDelayMs,
  shutdownTimeoutMs,
} from "@app/config";
import { z } from "zod";

/** A counter's id: its row in visit_counts (the migrate job creates the first one). */
export const counterId = z
  .string()
  .regex(/^[\w:.-]{1,64}$/, "letters, digits, _ : . - only")
  .default("visits");

/**
 * Where PostgreSQL is and whom to log in as, by the names the postgres image uses, so one
 * .env (or secret) serves both: the counter as its runtime role, the migrate job as the
 * schema's owner (infra/postgres/roles.sql).
 */
export const postgresConnection = (user: "counter" | "counter_owner") => ({
  POSTGRES_HOST: z.string().min(1).default("localhost"),
  POSTGRES_PORT: port(5432),
  POSTGRES_USER: z.string().min(1).default(user),
  POSTGRES_PASSWORD: z.string().min(1),
  POSTGRES_DB: z.string().min(1).default("counter"),
});

export const counterConfigSchema = z
  .object({
    PORT: port(3002),
    METRICS_PORT: metricsPort,
    NODE_ENV: nodeEnv,
    LOG_LEVEL: logLevel,
    SHUTDOWN_TIMEOUT_MS: shutdownTimeoutMs,
    SHUTDOWN_DELAY_MS: shutdownDelayMs,

    /** Which counter this instance serves: its PostgreSQL row id, and `cached-count:<id>` in Redis. */
    COUNTER_ID: counterId,
    ...postgresConnection("counter"),

    REDIS_URL: z.url({ protocol: /^rediss?$/ }).default("redis://localhost:6379"),
    REDIS_PASSWORD: z.string().optional(),

    /**
     * A request's whole PostgreSQL deadline: the wait for its batch, a connection and every
     * statement. A visit not committed by then is answered 503.
     */
    POSTGRES_TIMEOUT_MS: positiveDuration("milliseconds", 1_000),
    /** A Redis command slower than this is given up: the cache is skipped, never waited for. */
    REDIS_COMMAND_TIMEOUT_MS: positiveDuration("milliseconds", 50),
    /**
     * A cached count expires this long after PostgreSQL confirmed it: how far behind
     * PostgreSQL a read may be. Reads stay within it however the cache fails; a longer one
     * spares PostgreSQL reads, a shorter one shows visits from other replicas sooner.
     */
    CACHE_TTL_SECONDS: positiveDuration("seconds", 5),
    /**
     * How long a POST /visits retried with the same Idempotency-Key gets the number of the
     * first attempt instead of a new one. Clients retry within seconds; each key is a row
     * in PostgreSQL (about 100 bytes), so at 1,000 keyed visits/s 5 minutes hold some 30 MB.
     */
    IDEMPOTENCY_KEY_TTL_SECONDS: positiveDuration("seconds", 300),
  })
  // Reads that miss the cache share a PostgreSQL read that may have started up to one
  // deadline earlier: within the cache's bound only if that is shorter.
  .refine((config) => config.CACHE_TTL_SECONDS * 1000 > config.POSTGRES_TIMEOUT_MS, {
    message: "must be longer than POSTGRES_TIMEOUT_MS",
    path: ["CACHE_TTL_SECONDS"],
  });

export type CounterConfig = z.infer<typeof counterConfigSchema>;

export const loadCounterConfig = (env?: Record<string, string | undefined>): CounterConfig =>
  loadConfig("counter", counterConfigSchema, env);
