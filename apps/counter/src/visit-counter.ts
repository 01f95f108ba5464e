import { HttpError, type Logger } from "@app/server";
import type { CounterConfig } from "./config.ts";
import type { Increment, PostgresStore } from "./postgres-store.ts";
import type { RedisCache } from "./redis-cache.ts";
import { VisitBatcher } from "./visit-batcher.ts";

/** The current count, and whether the cache had it. */
export type Reading = { count: number; cache: "hit" | "miss" };

/** PostgreSQL did not answer: the client may retry later. */
const UNAVAILABLE = "Visit counter unavailable: PostgreSQL did not answer";

export interface VisitCounterOptions {
  config: CounterConfig;
  postgres: PostgresStore;
  cache: RedisCache;
  logger: Logger;
}

/**
 * Cache-aside over PostgreSQL (docs/COUNTER.md): a visit is answered once its batch
 * committed (VisitBatcher), and the cache is told afterwards, never waited for; a read is
 * a cache hit, or PostgreSQL's count, which is then cached.
 */
export class VisitCounter {
  readonly #key: string;
  readonly #postgres: PostgresStore;
  readonly #cache: RedisCache;
  readonly #logger: Logger;
  readonly #batcher: VisitBatcher<Increment>;
  /** The PostgreSQL read that concurrent cache misses share, while it runs. */
  #reading: Promise<number> | undefined;

  constructor({ config, postgres, cache, logger }: VisitCounterOptions) {
    this.#key = `cached-count:${config.COUNTER_ID}`;
    this.#postgres = postgres;
    this.#cache = cache;
    this.#logger = logger;
    const timeoutMs = config.POSTGRES_TIMEOUT_MS;
    this.#batcher = new VisitBatcher((keys, ms) => this.#countBatch(keys, ms), timeoutMs);
  }

  /**
   * Counts a visit. With an `idempotencyKey` (the client's Idempotency-Key header) a
   * retry of the same visit, within IDEMPOTENCY_KEY_TTL_SECONDS, gets the first
   * attempt's number back (`replayed`) instead of being counted again.
   */
  increment(idempotencyKey?: string): Promise<Increment> {
    return this.#batcher.count(idempotencyKey).catch(this.#unavailable);
  }

  /** The current count, without counting. */
  async current(): Promise<Reading> {
    const cached = await this.#cache.get(this.#key).catch((error: unknown) => {
      this.#logger.debug({ err: error }, "cache read failed, reading PostgreSQL");
      return null;
    });
    if (cached !== null) return { count: cached, cache: "hit" };
    // Joining a read that is already running is safe: it started at most the
    // PostgreSQL deadline ago, less than CACHE_TTL (the config checks it).
    this.#reading ??= this.#readPostgres().finally(() => {
      this.#reading = undefined;
    });
    return { count: await this.#reading.catch(this.#unavailable), cache: "miss" };
  }

  /** A 503 for the client; the cause at debug level (it repeats for every request). */
  readonly #unavailable = (error: unknown): never => {
    this.#logger.debug({ err: error }, "PostgreSQL did not answer");
    throw new HttpError(503, UNAVAILABLE);
  };

  async #readPostgres(): Promise<number> {
    const confirmedAt = Date.now();
    const count = await this.#postgres.read();
    this.#store(count, confirmedAt);
    return count;
  }

  async #countBatch(keys: ReadonlyArray<string | undefined>, timeoutMs: number) {
    const confirmedAt = Date.now();
    const counted = await this.#postgres.countBatch(keys, timeoutMs);
    // The batch's count, not its highest number: a replay's number may be long past.
    this.#store(counted.count, confirmedAt);
    return counted.visits;
  }

  /**
   * Caches a count PostgreSQL had at `confirmedAt` or later, in the background: nobody
   * waits for it, and a cache that missed it expires its older count by itself.
   */
  #store(count: number, confirmedAt: number): void {
    this.#cache.store(this.#key, count, confirmedAt).catch((error: unknown) => {
      this.#logger.debug({ err: error }, "count not cached");
    });
  }
}
