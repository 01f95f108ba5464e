import { loadConfig, logLevel, nodeEnv, port, shutdownTimeoutMs } from "@app/config";
import { z } from "zod";

const millis = (defaultMs: number) => z.coerce.number().int().min(0).default(defaultMs);

export const counterConfigSchema = z.object({
  PORT: port(3002),
  NODE_ENV: nodeEnv,
  LOG_LEVEL: logLevel,
  SHUTDOWN_TIMEOUT_MS: shutdownTimeoutMs,

  /** Which counter this instance serves: the PostgreSQL row id and the Redis key. */
  COUNTER_ID: z
    .string()
    .regex(/^[\w:.-]{1,64}$/, "letters, digits, _ : . - only")
    .default("visits"),

  // The same names the postgres image uses, so one .env (or secret) serves both.
  POSTGRES_HOST: z.string().min(1).default("localhost"),
  POSTGRES_PORT: port(5432),
  POSTGRES_USER: z.string().min(1).default("counter"),
  POSTGRES_PASSWORD: z.string().min(1),
  POSTGRES_DB: z.string().min(1).default("counter"),

  REDIS_URL: z.url({ protocol: /^rediss?$/ }).default("redis://localhost:6379"),
  REDIS_PASSWORD: z.string().optional(),

  /** A Redis command slower than this counts as an outage: the request takes the PostgreSQL path. */
  REDIS_COMMAND_TIMEOUT_MS: millis(500),
  /** PostgreSQL connect and query deadline, so an outage fails fast instead of hanging requests. */
  POSTGRES_TIMEOUT_MS: millis(1_000),
  /** How often Redis' count is written behind to PostgreSQL (coalesced: one write per interval). */
  FLUSH_INTERVAL_MS: millis(200).refine((ms) => ms > 0, "must be positive"),
  /**
   * After Redis (re)connects, increments are serialized through PostgreSQL's row
   * lock for this long, so a request still on the PostgreSQL path (in this replica
   * or in one that has not yet noticed Redis is back) can never hand out the same
   * number. It must outlast such a request: its wait for the write-behind plus a
   * PostgreSQL query, hence at least 1 s. (The window then lasts until the
   * Idempotency-Keys counted in PostgreSQL meanwhile are copied into Redis.)
   */
  REDIS_RECOVERY_WINDOW_MS: z.coerce.number().int().min(1_000).default(3_000),
  /**
   * How long a POST /visits retried with the same Idempotency-Key gets the number of
   * the first attempt instead of a new one. Clients retry within seconds; every key
   * is kept this long (in Redis, about 100 bytes each, or in PostgreSQL while Redis is
   * down), so at 1,000 keyed visits/s 5 minutes hold some 30 MB of keys.
   */
  IDEMPOTENCY_KEY_TTL_SECONDS: z.coerce.number().int().min(1).default(300),
});

export type CounterConfig = z.infer<typeof counterConfigSchema>;

export const loadCounterConfig = (env?: Record<string, string | undefined>): CounterConfig =>
  loadConfig("counter", counterConfigSchema, env);
