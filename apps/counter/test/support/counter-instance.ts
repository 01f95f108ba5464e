import { once } from "node:events";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createLogger } from "@app/server";
import { createCounterApp } from "../../src/app.ts";
import { PostgresStore } from "../../src/postgres-store.ts";
import { RedisStore } from "../../src/redis-store.ts";
import { VisitCounter } from "../../src/visit-counter.ts";
import { POSTGRES_CREDENTIALS, type StoreContainer } from "./containers.ts";

export interface InstanceOptions {
  postgres: StoreContainer;
  redis: StoreContainer;
  /** Row id and Redis key: a fresh one per test keeps tests independent on shared containers. */
  id: string;
  flushIntervalMs?: number;
}

// Short, to keep the tests quick, but long enough for the PostgreSQL path to settle.
const RECOVERY_WINDOW_MS = 1_000;

/** One counter app wired exactly as main.ts does, against the test containers. */
export class CounterInstance {
  readonly postgres: PostgresStore;
  readonly redis: RedisStore;
  readonly counter: VisitCounter;
  readonly app: ReturnType<typeof createCounterApp>;
  #server: Server | undefined;

  constructor(options: InstanceOptions) {
    const logger = createLogger({
      name: "counter-test",
      level: process.env.TEST_LOG_LEVEL ?? "silent",
    });
    this.postgres = new PostgresStore(
      options.id,
      {
        host: options.postgres.host,
        port: options.postgres.port,
        ...POSTGRES_CREDENTIALS,
        timeoutMs: 1_000,
      },
      logger,
    );
    this.redis = new RedisStore(
      { url: `redis://${options.redis.host}:${options.redis.port}`, commandTimeoutMs: 500 },
      logger,
    );
    this.counter = new VisitCounter({
      key: options.id,
      redis: this.redis,
      postgres: this.postgres,
      logger,
      flushIntervalMs: options.flushIntervalMs ?? 200,
      recoveryWindowMs: RECOVERY_WINDOW_MS,
      requestTtlSeconds: 300,
    });
    this.app = createCounterApp({
      counter: this.counter,
      logger,
      readiness: { redis: () => this.redis.ping(), postgres: () => this.postgres.ping() },
    });
  }

  /**
   * Connects like main.ts, then waits out the recovery window that follows every
   * Redis connection, so the test starts on the hot path.
   */
  async start(): Promise<this> {
    await this.redis.connect();
    await this.postgres.ensureSchema();
    this.counter.start();
    await new Promise((resolve) => setTimeout(resolve, RECOVERY_WINDOW_MS));
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
    await this.counter.stop().catch(() => {});
    await this.redis.close();
    await this.postgres.close();
  }

  async postgresCount(): Promise<number> {
    return this.postgres.read();
  }

  redisCount(key: string): Promise<number | null> {
    return this.redis.get(key);
  }
}

/** Polls `read` until it returns `expected`; resolves to the time it took. */
export async function eventually<T>(
  read: () => Promise<T>,
  expected: T,
  timeoutMs = 10_000,
): Promise<number> {
  const started = Date.now();
  let last: T | undefined;
  while (Date.now() - started < timeoutMs) {
    try {
      last = await read();
      if (last === expected) return Date.now() - started;
    } catch {
      // the store may still be coming back
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(
    `expected ${String(expected)} within ${timeoutMs} ms, last value ${String(last)}`,
  );
}

let sequence = 0;
export const uniqueId = (name: string) => `test:${name}:${process.pid}:${++sequence}`;
