import type { Logger } from "@app/server";
import { coalesce } from "./coalesce.ts";
import type { Increment, PostgresStore } from "./postgres-store.ts";
import type { RedisCache } from "./redis-cache.ts";
import { VisitBatcher } from "./visit-batcher.ts";

/** A counted visit: its number, whether it is the answer to a retry, and whether the cache has it. */
export interface Visit extends Increment {
  /**
   * False when the cache could not be raised (Redis down, frozen, unreachable): until
   * another visit is counted, or for at most CACHE_TTL_SECONDS, reads may not show it.
   */
  cached: boolean;
}

/** The current count, where it came from, and whether it may be behind. */
export interface Reading {
  count: number;
  source: "cache" | "postgres";
  /** Read from the cache while PostgreSQL is unreachable: visits may have been counted since. */
  stale: boolean;
}

/** Neither store could answer: the client may retry later (HTTP 503). */
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
  /** Deadline of a visit, from its arrival to its commit. */
  timeoutMs: number;
  /** How long an Idempotency-Key is remembered. */
  keyTtlSeconds: number;
}

/**
 * Cache-aside over PostgreSQL.
 *
 * - POST: PostgreSQL alone hands out numbers. Concurrent visits share one transaction
 *   (VisitBatcher), each gets its own number from the batch's range, and a visit is
 *   answered only after the commit. Then the cached count is raised to the batch's
 *   highest number (set-if-greater), so a later GET sees it.
 * - GET: the cached count; on a miss (or with Redis slow or down) PostgreSQL's, which
 *   then fills the cache.
 * - Redis is never trusted for a number: it only ever holds counts PostgreSQL had
 *   committed, it is raised to PostgreSQL's count after every reconnection before reads
 *   use it, and every cached count expires `CACHE_TTL_SECONDS` after its last raise.
 */
export class VisitCounter {
  readonly #key: string;
  readonly #postgres: PostgresStore;
  readonly #cache: RedisCache;
  readonly #logger: Logger;
  readonly #keyTtlSeconds: number;
  readonly #batcher: VisitBatcher<Visit>;
  /** PostgreSQL's count; concurrent GETs that miss the cache share one query. */
  readonly #readPostgres: () => Promise<number>;
  /** False from a (re)connection until the cache has been raised to PostgreSQL's count. */
  #cacheRefreshed = false;
  #connections = 0;
  #cleaningKeys = false;
  /** Keys claimed since the last cleanup started. */
  #keysAdded = 0;

  constructor(options: VisitCounterOptions) {
    const { id, postgres, cache, logger, timeoutMs } = options;
    this.#key = `count:${id}`;
    this.#postgres = postgres;
    this.#cache = cache;
    this.#logger = logger;
    this.#keyTtlSeconds = options.keyTtlSeconds;
    this.#readPostgres = coalesce(() => postgres.read());
    this.#batcher = new VisitBatcher((keys, ms) => this.#countBatch(keys, ms), timeoutMs);
    cache.onReady(() => void this.#refreshCache());
  }

  /**
   * Counts a visit. With an `idempotencyKey` (the client's Idempotency-Key header) a
   * retry of the same visit, within `keyTtlSeconds`, gets the first attempt's number
   * back (`replayed`) instead of being counted again.
   */
  async increment(idempotencyKey?: string): Promise<Visit> {
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
    if (this.#cache.isReady && this.#cacheRefreshed) {
      try {
        const cached = await this.#cache.get(this.#key);
        if (cached !== null) {
          return { count: cached, source: "cache", stale: !this.#postgres.reachable };
        }
      } catch (error) {
        this.#logger.debug({ err: error }, "cache read failed, reading PostgreSQL");
      }
    }
    let count: number;
    try {
      count = await this.#readPostgres();
    } catch (error) {
      throw new CounterUnavailableError(
        "Visit counter unavailable: neither the cache nor PostgreSQL answered",
        error,
      );
    }
    void this.#raiseCache(count);
    return { count, source: "postgres", stale: false };
  }

  async #countBatch(keys: ReadonlyArray<string | undefined>, timeoutMs: number) {
    const counted = await this.#postgres.countBatch(keys, timeoutMs);
    // Before the visits are answered: a GET that starts after an answer sees its number.
    // The batch's count, not its highest number: a replay's number may be long past.
    const cached = await this.#raiseCache(counted.count);
    this.#keysAdded += keys.filter((key) => key !== undefined).length;
    if (this.#keysAdded > 0) this.#deleteExpiredKeys();
    return counted.visits.map((visit) => ({ ...visit, cached }));
  }

  /**
   * Never fails: a cache that cannot be raised is skipped. Other replicas' raises carry
   * PostgreSQL's count after their own batches, which includes this one, and without
   * them the cached count stops being fresh after CACHE_TTL_SECONDS.
   */
  async #raiseCache(count: number): Promise<boolean> {
    if (!this.#cache.isReady) return false;
    try {
      await this.#cache.raise(this.#key, count);
      return true;
    } catch (error) {
      this.#logger.debug({ err: error }, "cache not raised");
      return false;
    }
  }

  /**
   * After every (re)connection Redis may hold anything: nothing (restarted, flushed) or
   * an older count (restored from an older file, or raises that never arrived while it
   * was frozen). Reads skip it until it has been raised to PostgreSQL's count. If
   * PostgreSQL cannot be read, the cache is used as it is and its answers are marked
   * stale.
   */
  async #refreshCache(): Promise<void> {
    const connection = ++this.#connections;
    this.#cacheRefreshed = false;
    let count: number;
    try {
      count = await this.#readPostgres();
    } catch (error) {
      this.#logger.warn({ err: error }, "cache not refreshed: PostgreSQL did not answer");
      if (connection === this.#connections) this.#cacheRefreshed = true;
      return;
    }
    try {
      await this.#cache.raise(this.#key, count);
      if (connection === this.#connections) this.#cacheRefreshed = true;
    } catch (error) {
      // Lost again; the next connection refreshes it.
      this.#logger.debug({ err: error }, "cache not refreshed");
    }
  }

  /**
   * Keys are deleted by age, one bounded cleanup at a time per replica, each allowed
   * twice as many as were claimed since the previous one started: the table keeps up
   * with any rate, and no statement grows with the backlog.
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
