import type { Logger } from "@app/server";
import { withDeadline } from "./deadline.ts";
import type { Increment, PostgresStore } from "./postgres-store.ts";
import type { RedisCache } from "./redis-cache.ts";
import { VisitBatcher } from "./visit-batcher.ts";

/** Expired keys are looked for once this many keys were claimed since the last time. */
const CLEANUP_EVERY = 500;

/** The current count, and whether the cache had it. */
export interface Reading {
  count: number;
  cache: "hit" | "miss";
}

/** The counter cannot answer: the client may retry later (HTTP 503). */
export class CounterUnavailableError extends Error {
  constructor(message: string, cause: unknown) {
    super(message, { cause });
    this.name = "CounterUnavailableError";
  }
}

export interface VisitCounterOptions {
  /** The counter's row in PostgreSQL; its cache key is `count:<id>`. */
  id: string;
  postgres: PostgresStore;
  cache: RedisCache;
  logger: Logger;
  /** Deadline of a request's PostgreSQL work, from its arrival. */
  timeoutMs: number;
  /** How long an Idempotency-Key is remembered. */
  keyTtlSeconds: number;
}

/**
 * Cache-aside over PostgreSQL (docs/COUNTER.md).
 *
 * - POST: PostgreSQL alone hands out numbers. Concurrent visits share one transaction
 *   (VisitBatcher), each gets its own number from the batch's range, and a visit is
 *   answered once its batch committed. The cache is told afterwards, never waited for.
 * - GET: the cached count on a hit; on a miss (or a cache error), PostgreSQL's count,
 *   which is then cached. Every cached count expires CACHE_TTL after the moment
 *   PostgreSQL confirmed it, so a read shows at least what PostgreSQL had committed
 *   CACHE_TTL before the read.
 */
export class VisitCounter {
  readonly #key: string;
  readonly #postgres: PostgresStore;
  readonly #cache: RedisCache;
  readonly #logger: Logger;
  readonly #timeoutMs: number;
  readonly #keyTtlSeconds: number;
  readonly #batcher: VisitBatcher<Increment>;
  /** The PostgreSQL read that concurrent cache misses share, while it runs. */
  #reading: Promise<number> | undefined;
  #cleaningKeys = false;
  /** Keys claimed since the last cleanup started. */
  #keysAdded = 0;

  constructor(options: VisitCounterOptions) {
    this.#key = `count:${options.id}`;
    this.#postgres = options.postgres;
    this.#cache = options.cache;
    this.#logger = options.logger;
    this.#timeoutMs = options.timeoutMs;
    this.#keyTtlSeconds = options.keyTtlSeconds;
    this.#batcher = new VisitBatcher((keys, ms) => this.#countBatch(keys, ms), options.timeoutMs);
  }

  /**
   * Counts a visit. With an `idempotencyKey` (the client's Idempotency-Key header) a
   * retry of the same visit, within `keyTtlSeconds`, gets the first attempt's number
   * back (`replayed`) instead of being counted again.
   */
  async increment(idempotencyKey?: string): Promise<Increment> {
    try {
      return await this.#batcher.count(idempotencyKey);
    } catch (error) {
      this.#logger.debug({ err: error }, "visit not counted");
      throw new CounterUnavailableError(
        "Visit counter unavailable: PostgreSQL did not answer",
        error,
      );
    }
  }

  /** The current count, without counting. */
  async current(): Promise<Reading> {
    if (this.#cache.isReady) {
      const cached = await this.#cache.get(this.#key).catch((error: unknown) => {
        this.#logger.debug({ err: error }, "cache read failed, reading PostgreSQL");
        return null;
      });
      if (cached !== null) return { count: cached, cache: "hit" };
    }
    try {
      // Joining a read that is already running is safe: it started at most the
      // PostgreSQL deadline ago, less than CACHE_TTL (the config checks it).
      this.#reading ??= this.#readPostgres().finally(() => {
        this.#reading = undefined;
      });
      return { count: await this.#reading, cache: "miss" };
    } catch (error) {
      throw new CounterUnavailableError(
        "Visit counter unavailable: PostgreSQL did not answer",
        error,
      );
    }
  }

  async #readPostgres(): Promise<number> {
    const confirmedAt = Date.now();
    const count = await withDeadline(this.#postgres.read(), this.#timeoutMs, "postgres: no count");
    this.#store(count, confirmedAt);
    return count;
  }

  async #countBatch(keys: ReadonlyArray<string | undefined>, timeoutMs: number) {
    const confirmedAt = Date.now();
    const counted = await this.#postgres.countBatch(keys, timeoutMs);
    // The batch's count, not its highest number: a replay's number may be long past.
    this.#store(counted.count, confirmedAt);
    this.#keysAdded += keys.filter((key) => key !== undefined).length;
    if (this.#keysAdded >= CLEANUP_EVERY) this.#deleteExpiredKeys();
    return counted.visits;
  }

  /**
   * Caches a count PostgreSQL had at `confirmedAt` or later, in the background: nobody
   * waits for it, and a cache that missed it expires its older count by itself.
   */
  #store(count: number, confirmedAt: number): void {
    if (!this.#cache.isReady) return;
    this.#cache.store(this.#key, count, confirmedAt).catch((error: unknown) => {
      this.#logger.debug({ err: error }, "count not cached");
    });
  }

  /**
   * Keys are deleted by age, one bounded cleanup at a time per replica, after every
   * CLEANUP_EVERY keys claimed, each allowed twice as many as were claimed since the
   * previous one started: the table keeps up with any rate, no statement grows with the
   * backlog, and a quiet counter costs nothing.
   */
  #deleteExpiredKeys(): void {
    if (this.#cleaningKeys) return;
    this.#cleaningKeys = true;
    const limit = Math.max(100, 2 * this.#keysAdded);
    this.#keysAdded = 0;
    this.#postgres
      .deleteExpiredKeys(this.#keyTtlSeconds, limit)
      .catch((error: unknown) => this.#logger.debug({ err: error }, "expired keys not deleted"))
      .finally(() => {
        this.#cleaningKeys = false;
      });
  }
}
