import { once } from "node:events";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createLogger } from "@app/server";
import { eventually } from "@app/test-support";
import { expect } from "vitest";
import { createCounterApp } from "../../src/app.ts";
import { loadCounterConfig } from "../../src/config.ts";
import { PostgresStore } from "../../src/postgres-store.ts";
import { RedisCache } from "../../src/redis-cache.ts";
import { VisitCounter } from "../../src/visit-counter.ts";
import { counterEnv, type StoreContainer } from "./containers.ts";

export interface InstanceOptions {
  postgres: StoreContainer;
  redis: StoreContainer;
  /** Row id (and cache key): a fresh one per test keeps tests independent on shared containers. */
  id: string;
  cacheTtlSeconds?: number;
  keyTtlSeconds?: number;
}

/** One counter app wired exactly as main.ts does, in this process, against the test containers. */
export class CounterInstance {
  readonly postgres: PostgresStore;
  readonly cache: RedisCache;
  readonly counter: VisitCounter;
  readonly app: ReturnType<typeof createCounterApp>;
  readonly cacheKey: string;
  readonly id: string;
  #server: Server | undefined;

  constructor(options: InstanceOptions) {
    const logger = createLogger({
      name: "counter-test",
      level: process.env.TEST_LOG_LEVEL ?? "silent",
    });
    this.id = options.id;
    this.cacheKey = `cached-count:${options.id}`;
    const config = loadCounterConfig({
      ...counterEnv(options),
      CACHE_TTL_SECONDS: String(options.cacheTtlSeconds ?? 5),
      IDEMPOTENCY_KEY_TTL_SECONDS: String(options.keyTtlSeconds ?? 300),
      // Tests that call the cache themselves expect an answer, also on a busy machine.
      REDIS_COMMAND_TIMEOUT_MS: "500",
    });
    this.postgres = new PostgresStore(config, logger);
    this.cache = new RedisCache(config, logger);
    this.counter = new VisitCounter({ config, postgres: this.postgres, cache: this.cache, logger });
    this.app = createCounterApp({
      counter: this.counter,
      logger,
      readiness: {
        postgres: async () => void (await this.postgres.read()),
        redis: () => this.cache.ping(),
      },
    });
  }

  /**
   * Connects like main.ts, and waits until the cache is in use. The counter's row is
   * created first, where missing: a new counter id on a migrated database, as an
   * operator adds one (the migrate job creates only COUNTER_ID's, with the tables).
   */
  async start(): Promise<this> {
    await this.postgres.pool.query(
      "INSERT INTO visit_counts (id, count) VALUES ($1, 0) ON CONFLICT (id) DO NOTHING",
      [this.id],
    );
    await eventually(() => this.cache.ping(), 10_000, 50);
    return this;
  }

  /** A real listening server, for tests that need true concurrency over sockets. */
  async listen(): Promise<string> {
    this.#server = this.app.listen(0, "127.0.0.1");
    await once(this.#server, "listening");
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** The shutdown hooks of main.ts, in the same order. */
  async close(): Promise<void> {
    if (this.#server) {
      const server = this.#server;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    }
    this.cache.close();
    await this.postgres.close();
  }

  postgresCount(): Promise<number> {
    return this.postgres.read();
  }
}

/** Polls `read` until it returns `expected` (the shared `eventually`); resolves to the time it took. */
export async function until<T>(read: () => Promise<T>, expected: T, timeoutMs = 10_000) {
  const started = Date.now();
  await eventually(async () => expect(await read()).toBe(expected), timeoutMs, 50);
  return Date.now() - started;
}

let sequence = 0;
export const uniqueId = (name: string) => `test:${name}:${process.pid}:${++sequence}`;
