import { setTimeout as delay } from "node:timers/promises";
import type { Logger } from "@app/server";
import { CoalescedIncrements } from "./coalesced-increments.ts";
import type { PostgresStore } from "./postgres-store.ts";
import type { Increment, RedisStore, RequestKey } from "./redis-store.ts";
import { WriteBehind } from "./write-behind.ts";

export interface Visit {
  count: number;
  /** Which store produced the number: the hot path, or the fallback. */
  source: "redis" | "postgres";
  /** A retry of a request already counted: its earlier number, not a new one. */
  replayed: boolean;
}

/** Neither store could count the visit; the API answers 503. */
export class StoresUnavailableError extends Error {
  constructor(cause: unknown) {
    super("Visit counter unavailable: neither Redis nor PostgreSQL answered", { cause });
    this.name = "StoresUnavailableError";
  }
}

export interface VisitCounterOptions {
  key: string;
  redis: RedisStore;
  postgres: PostgresStore;
  logger: Logger;
  flushIntervalMs: number;
  recoveryWindowMs: number;
  /** How long a retry with the same Idempotency-Key gets the same number. */
  requestTtlSeconds: number;
}

/**
 * Counts visits exactly with Redis as the hot path and PostgreSQL as the durable
 * store and fallback:
 * - Redis up: one atomic script (INCR, seeding a missing key from PostgreSQL),
 *   written behind to PostgreSQL once per interval.
 * - Redis down: `count = GREATEST(count, highest number handed out) + n` in PostgreSQL,
 *   one statement for the n visits that arrived while the previous one ran.
 * - Redis back: its key is raised to at least PostgreSQL's count before use.
 * - PostgreSQL down: Redis alone; the write-behind catches up when it returns.
 */
export class VisitCounter {
  readonly #key: string;
  readonly #redis: RedisStore;
  readonly #postgres: PostgresStore;
  readonly #logger: Logger;
  readonly #writeBehind: WriteBehind;
  readonly #postgresIncrements: CoalescedIncrements;
  readonly #settleMs: number;
  readonly #requestTtlSeconds: number;
  /** The highest number this instance has handed out or seen: nothing below it is ever handed out again. */
  #highest = 0;
  // Until Redis first answers, the instance's start counts as its last answer: a
  // replica that starts while the others count in Redis must not assume Redis is down.
  #redisAnsweredAt = Date.now();
  /** Just after Redis (re)connected: increments go through PostgreSQL's row lock. */
  #recovering = false;
  #reconnections = 0;
  #recoveryTimer: NodeJS.Timeout | undefined;
  #stopped = false;
  #reading: Promise<number> | undefined;

  constructor(options: VisitCounterOptions) {
    const { key, redis, postgres, logger, flushIntervalMs, recoveryWindowMs } = options;
    this.#key = key;
    this.#requestTtlSeconds = options.requestTtlSeconds;
    this.#redis = redis;
    this.#postgres = postgres;
    this.#logger = logger;
    // Other replicas persist what they handed out within one write-behind
    // interval; the PostgreSQL path waits that long after Redis' last answer.
    this.#settleMs = 2 * flushIntervalMs + 100;
    redis.onReady(() => {
      if (this.#stopped) return;
      const reconnection = ++this.#reconnections;
      this.#recovering = true;
      clearTimeout(this.#recoveryTimer);
      this.#recoveryTimer = setTimeout(
        () => void this.#endRecovery(reconnection),
        recoveryWindowMs,
      );
      this.#recoveryTimer.unref();
    });
    this.#writeBehind = new WriteBehind({
      // Redis' own value, not only ours: numbers from a replica that crashed
      // before its write-behind ran are persisted by the survivors.
      target: async () => Math.max(this.#highest, await this.#redisCountOrZero()),
      persist: (count) => postgres.persistAtLeast(count),
      intervalMs: flushIntervalMs,
      logger,
    });
    // Redis down: concurrent visits share one transaction (see CoalescedIncrements).
    this.#postgresIncrements = new CoalescedIncrements(async (idempotencyKeys) => {
      const counted = await postgres.countBatch(
        this.#highest,
        idempotencyKeys,
        options.requestTtlSeconds,
      );
      this.#writeBehind.notePersisted(Math.max(0, ...counted.map((visit) => visit?.count ?? 0)));
      return counted;
    });
  }

  start(): void {
    this.#writeBehind.start();
  }

  /** Final write-behind flush (graceful shutdown). */
  stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#recoveryTimer);
    return this.#writeBehind.stop();
  }

  /** Forces the write-behind now (tests and shutdown). */
  flush(): Promise<void> {
    return this.#writeBehind.flush();
  }

  /**
   * Counts a visit. With an `idempotencyKey` (the client's Idempotency-Key header) a
   * retry of the same request, within `requestTtlSeconds`, gets the first attempt's
   * number back (`replayed`) instead of being counted again.
   */
  async increment(idempotencyKey?: string): Promise<Visit> {
    if (this.#redis.isReady) {
      try {
        return this.#observe(await this.#incrementInRedis(idempotencyKey), "redis");
      } catch (error) {
        this.#logger.debug({ err: error }, "redis path failed, counting in PostgreSQL");
      }
    }
    try {
      return this.#observe(await this.#incrementInPostgres(idempotencyKey), "postgres");
    } catch (error) {
      throw new StoresUnavailableError(error);
    }
  }

  /** The current count, without counting (cache-aside read). */
  async current(): Promise<Visit> {
    if (this.#redis.isReady) {
      try {
        const cached = await this.#redis.get(this.#key);
        if (cached !== null) return this.#observe({ count: cached, replayed: false }, "redis");
        // Miss: load from PostgreSQL and populate Redis, unless a replica just did.
        const durable = Math.max(await this.#durableCount(), this.#highest);
        await this.#redis.setIfAbsent(this.#key, durable);
        return this.#observe({ count: durable, replayed: false }, "postgres");
      } catch (error) {
        this.#logger.debug({ err: error }, "redis read failed, reading PostgreSQL");
      }
    }
    try {
      const count = Math.max(await this.#postgres.read(), this.#highest);
      return this.#observe({ count, replayed: false }, "postgres");
    } catch (error) {
      throw new StoresUnavailableError(error);
    }
  }

  async #incrementInRedis(idempotencyKey: string | undefined): Promise<Increment> {
    const request =
      idempotencyKey === undefined
        ? undefined
        : this.#requestKey(idempotencyKey, this.#requestTtlSeconds);
    if (this.#recovering) {
      const counted = await this.#incrementUnderRowLock(request, idempotencyKey);
      if (counted !== undefined) return counted;
    }
    const counted = await this.#redis.incrementFromFloor(this.#key, this.#highest, false, request);
    if (counted !== null) return counted;
    // Cache miss (Redis emptied or restarted without data): reload from
    // PostgreSQL. If PostgreSQL is down too this throws: no safe number exists.
    const durable = await this.#durableCount();
    const seeded = await this.#redis.incrementFromFloor(
      this.#key,
      Math.max(durable, this.#highest),
      true,
      request,
    );
    if (seeded === null) throw new Error("redis: seeding script returned nil");
    return seeded;
  }

  /**
   * Right after Redis (re)connects another replica may still be counting in
   * PostgreSQL. Taking PostgreSQL's row lock around the Redis increment (and
   * storing its result) serializes the two paths, so no number is handed out
   * twice. Returns undefined when PostgreSQL is unavailable: then nobody can be
   * counting there, and Redis alone is safe.
   */
  async #incrementUnderRowLock(
    request: RequestKey | undefined,
    idempotencyKey: string | undefined,
  ): Promise<Increment | undefined> {
    let issued: Increment | undefined;
    let redisFailed = false;
    try {
      return await this.#postgres.lockedIncrement(
        async (durable) => {
          try {
            const counted = await this.#redis.incrementFromFloor(
              this.#key,
              Math.max(durable, this.#highest),
              true,
              request,
            );
            if (counted === null) throw new Error("redis: seeding script returned nil");
            issued = counted;
            return counted;
          } catch (error) {
            redisFailed = true;
            throw error;
          }
        },
        idempotencyKey === undefined
          ? undefined
          : { idempotencyKey, ttlSeconds: this.#requestTtlSeconds },
      );
    } catch (error) {
      // Redis counted but PostgreSQL failed to commit: the number is valid, the write-behind persists it.
      if (issued !== undefined) return issued;
      if (redisFailed) throw error;
      return undefined;
    }
  }

  async #incrementInPostgres(idempotencyKey: string | undefined): Promise<Increment> {
    const settleUntil = this.#redisAnsweredAt + this.#settleMs;
    const wait = settleUntil - Date.now();
    if (wait > 0) await delay(wait);
    return this.#postgresIncrements.next(idempotencyKey);
  }

  /**
   * PostgreSQL's count, read once for all the requests that need it at the same
   * moment: after Redis is emptied every request misses at once, and one query
   * serves them all instead of one connection each.
   */
  #durableCount(): Promise<number> {
    this.#reading ??= this.#postgres.read().finally(() => {
      this.#reading = undefined;
    });
    return this.#reading;
  }

  /** In Redis a request's key sits beside the counter's key, under its name. */
  #requestKey(idempotencyKey: string, ttlSeconds: number): RequestKey {
    return { key: `${this.#key}:request:${idempotencyKey}`, ttlSeconds };
  }

  /**
   * Ends the window that follows a (re)connection to Redis. By then nobody counts in
   * PostgreSQL any more, so the keys of the visits counted there are copied into
   * Redis: a retry of one of them that comes later still gets its number. Until the
   * copy is done the row-locked path looks them up in PostgreSQL itself.
   */
  async #endRecovery(reconnection: number): Promise<void> {
    try {
      const requests = await this.#postgres.recentRequests(this.#requestTtlSeconds);
      // In chunks of concurrent commands, which node-redis pipelines.
      for (let i = 0; i < requests.length; i += 500) {
        await Promise.all(
          requests.slice(i, i + 500).map(({ key, count, secondsLeft }) => {
            const request = this.#requestKey(key, secondsLeft);
            return this.#redis.setIfAbsent(request.key, count, request.ttlSeconds);
          }),
        );
      }
      if (requests.length > 0) {
        this.#logger.info(
          { keys: requests.length },
          "redis: idempotency keys copied from postgres",
        );
      }
      await this.#postgres.deleteExpiredRequests(this.#requestTtlSeconds);
    } catch (error) {
      this.#logger.warn({ err: error }, "could not copy idempotency keys to redis");
    } finally {
      // Unless Redis reconnected meanwhile and started a window of its own.
      if (reconnection === this.#reconnections) this.#recovering = false;
    }
  }

  async #redisCountOrZero(): Promise<number> {
    if (!this.#redis.isReady) return 0;
    try {
      return (await this.#redis.get(this.#key)) ?? 0;
    } catch {
      return 0;
    }
  }

  #observe({ count, replayed }: Increment, source: Visit["source"]): Visit {
    // #highest is the floor of every later increment: one bad value would poison it.
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new Error(`${source}: not a count: ${count}`);
    }
    this.#highest = Math.max(this.#highest, count);
    if (source === "redis") this.#redisAnsweredAt = Date.now();
    return { count, source, replayed };
  }
}
