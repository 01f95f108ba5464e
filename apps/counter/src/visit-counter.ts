import type { Logger } from "@app/server";
import { coalesce } from "./coalesce.ts";
import { withDeadline } from "./deadline.ts";
import type { Increment, PostgresStore } from "./postgres-store.ts";
import type { CachedCount, RedisCache } from "./redis-cache.ts";
import { VisitBatcher } from "./visit-batcher.ts";

/** Expired keys are looked for once this many keys were claimed since the last time. */
const CLEANUP_EVERY = 500;

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
  /** PostgreSQL did not answer, and the cache's count could not be confirmed. */
  stale: boolean;
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
 *   answered only after the commit, and after the cached count has been raised to the
 *   batch's count, so a GET that starts after the answer sees it.
 * - GET: the cached count while it is fresh; otherwise PostgreSQL's, which then raises
 *   the cache. With PostgreSQL unreachable, whatever the cache holds, marked stale.
 * - Redis is never trusted for a number: it only ever holds counts PostgreSQL had
 *   confirmed, each fresh for CACHE_TTL_SECONDS after that confirmation, and after every
 *   (re)connection reads ignore it until a count confirmed since has been written to it.
 */
export class VisitCounter {
  readonly #key: string;
  readonly #postgres: PostgresStore;
  readonly #cache: RedisCache;
  readonly #logger: Logger;
  readonly #timeoutMs: number;
  readonly #keyTtlSeconds: number;
  readonly #batcher: VisitBatcher<Visit>;
  /** PostgreSQL's count; concurrent GETs that miss the cache share queries. */
  readonly #readPostgres: () => Promise<number>;
  /** Counts Redis (re)connections: a count confirmed before the latest one cannot vouch for it. */
  #connection = 0;
  /** Whether, on this connection, Redis has been raised to a count confirmed since it began. */
  #cacheTrusted = false;
  #cleaningKeys = false;
  /** Keys claimed since the last cleanup started. */
  #keysAdded = 0;

  constructor(options: VisitCounterOptions) {
    const { id, postgres, cache, logger, timeoutMs } = options;
    this.#key = `count:${id}`;
    this.#postgres = postgres;
    this.#cache = cache;
    this.#logger = logger;
    this.#timeoutMs = timeoutMs;
    this.#keyTtlSeconds = options.keyTtlSeconds;
    this.#readPostgres = coalesce(() => postgres.read());
    this.#batcher = new VisitBatcher((keys, ms) => this.#countBatch(keys, ms), timeoutMs);
    cache.onReady(() => {
      // Redis may come back empty, or with an older count (restored from an older file,
      // or raises lost while it was frozen): distrust it until it is raised again.
      this.#connection++;
      this.#cacheTrusted = false;
      void this.#readPostgresAndRaise().catch((error: unknown) => {
        this.#logger.debug({ err: error }, "cache not refreshed after reconnecting");
      });
    });
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
    let cached: CachedCount | null = null;
    if (this.#cache.isReady) {
      cached = await this.#cache.get(this.#key).catch((error: unknown) => {
        this.#logger.debug({ err: error }, "cache read failed, reading PostgreSQL");
        return null;
      });
      if (cached?.fresh && this.#cacheTrusted) {
        return { count: cached.count, source: "cache", stale: false };
      }
    }
    try {
      return { count: await this.#readPostgresAndRaise(), source: "postgres", stale: false };
    } catch (error) {
      // Better an old count, said to be possibly behind, than none.
      if (cached) return { count: cached.count, source: "cache", stale: true };
      throw new CounterUnavailableError(
        "Visit counter unavailable: neither the cache nor PostgreSQL answered",
        error,
      );
    }
  }

  /** PostgreSQL's count, within the request deadline; the cache is raised to it meanwhile. */
  async #readPostgresAndRaise(): Promise<number> {
    const connection = this.#connection;
    const confirmedAt = Date.now();
    const count = await withDeadline(this.#readPostgres(), this.#timeoutMs, "postgres: no count");
    void this.#raiseCache(count, confirmedAt, connection);
    return count;
  }

  async #countBatch(keys: ReadonlyArray<string | undefined>, timeoutMs: number) {
    const connection = this.#connection;
    const confirmedAt = Date.now();
    const counted = await this.#postgres.countBatch(keys, timeoutMs);
    // Before the visits are answered: a GET that starts after an answer sees its number.
    // The batch's count, not its highest number: a replay's number may be long past.
    const cached = await this.#raiseCache(counted.count, confirmedAt, connection);
    this.#keysAdded += keys.filter((key) => key !== undefined).length;
    if (this.#keysAdded >= CLEANUP_EVERY) this.#deleteExpiredKeys();
    return counted.visits.map((visit) => ({ ...visit, cached }));
  }

  /**
   * Raises the cache to a count PostgreSQL confirmed at `confirmedAt`, while Redis was
   * on `connection`. Never fails: a cache that cannot be raised is skipped (the next
   * raise carries PostgreSQL's count, this batch included, and a cached count stops
   * being fresh CACHE_TTL_SECONDS after its confirmation).
   */
  async #raiseCache(count: number, confirmedAt: number, connection: number): Promise<boolean> {
    if (!this.#cache.isReady) return false;
    try {
      await this.#cache.raise(this.#key, count, confirmedAt);
      // Confirmed after this connection began: the cache holds at least what was
      // committed before the connection, and every later commit raises it in turn.
      if (connection === this.#connection) this.#cacheTrusted = true;
      return true;
    } catch (error) {
      this.#logger.debug({ err: error }, "cache not raised");
      return false;
    }
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
