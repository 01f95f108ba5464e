import { HttpError, type Logger } from "@app/server";
import type { CounterConfig } from "./config.ts";
import * as metrics from "./metrics.ts";
import { PostgresHealth } from "./postgres-errors.ts";
import type { Increment, PostgresStore } from "./postgres-store.ts";
import type { RedisCache } from "./redis-cache.ts";
import { VisitBatcher } from "./visit-batcher.ts";

/** The current count, and whether the cache had it. */
export type Reading = { count: number; cache: "hit" | "miss" };

export interface VisitCounterOptions {
  config: CounterConfig;
  postgres: PostgresStore;
  cache: RedisCache;
  logger: Logger;
  /** Where failures are classified and logged once per change (a new one by default). */
  health?: PostgresHealth;
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
  /** PostgreSQL's state as this replica sees it; the readiness check reports through it too. */
  readonly health: PostgresHealth;
  /** The PostgreSQL read that concurrent cache misses share, while it runs. */
  #reading: Promise<number> | undefined;

  constructor({ config, postgres, cache, logger, health }: VisitCounterOptions) {
    this.health = health ?? new PostgresHealth(logger);
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
    return this.#batcher.count(idempotencyKey).catch((error: unknown) => {
      metrics.visitsUnavailable.inc();
      return this.#unavailable(error);
    });
  }

  /** The current count, without counting. */
  async current(): Promise<Reading> {
    const cached = await this.#cache.get(this.#key).then(
      (count) => {
        metrics.cacheRequests.inc({ result: count === null ? "miss" : "hit" });
        return count;
      },
      (error: unknown) => {
        this.#logger.debug({ err: error }, "cache read failed, reading PostgreSQL");
        metrics.cacheRequests.inc({ result: "error" });
        return null;
      },
    );
    if (cached !== null) return { count: cached, cache: "hit" };
    // Joining a read that is already running is safe: its answer is used only if it came
    // within the PostgreSQL deadline of the query, less than CACHE_TTL (config.ts).
    this.#reading ??= this.#readPostgres().finally(() => {
      this.#reading = undefined;
    });
    return { count: await this.#reading.catch(this.#unavailable), cache: "miss" };
  }

  /**
   * A 503 for the client, naming only the class of the failure ("database login
   * refused"): the server's words may name roles, hosts or tables. The replica logs
   * the detail once per change of state (PostgresHealth), each request's at debug.
   */
  readonly #unavailable = (error: unknown): never => {
    const { reason } = this.health.failed(error);
    this.#logger.debug({ err: error }, reason);
    throw new HttpError(503, `Visit counter unavailable: ${reason}`);
  };

  async #readPostgres(): Promise<number> {
    const confirmedAt = Date.now();
    const count = await this.#postgres.read().catch(metrics.recordPostgresError);
    this.health.succeeded();
    this.#store(count, confirmedAt);
    return count;
  }

  async #countBatch(keys: ReadonlyArray<string | undefined>, timeoutMs: number) {
    const confirmedAt = Date.now();
    const counted = await this.#postgres
      .countBatch(keys, timeoutMs)
      .catch(metrics.recordPostgresError);
    this.health.succeeded();
    const replays = counted.visits.filter((visit) => visit.replayed).length;
    metrics.recordBatch(keys.length, replays, (Date.now() - confirmedAt) / 1000);
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
      metrics.cacheRaiseFailures.inc();
    });
  }
}
