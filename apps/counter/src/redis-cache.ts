import type { Logger } from "@app/server";
import { createClient, defineScript, type RedisClientType } from "@redis/client";
import { withDeadline } from "./deadline.ts";

export interface RedisCacheOptions {
  url: string;
  password?: string | undefined;
  /** Deadline of every command: a cache slower than this is skipped, never waited for. */
  timeoutMs: number;
  /** How long a cached count is fresh after PostgreSQL confirmed it. */
  ttlSeconds: number;
}

/**
 * A cached count is two keys: the count itself, which never expires and is only ever
 * raised, and a marker that it is fresh, which expires CACHE_TTL_SECONDS after the
 * moment PostgreSQL confirmed the count (ARGV[2], an absolute time in ms). Reads use the
 * count only while the marker lives.
 *
 * The count never expiring keeps it monotonic: a raise that arrives late (from a
 * replica that stalled, or buffered by a frozen Redis) can never bring back a lower
 * count after a higher one expired. A lower raise changes nothing, and a late one
 * cannot make a count fresh for longer than TTL after its confirmation: an expiry in
 * the past deletes the marker. Replicas raising in any order leave the highest count.
 */
const RAISE = defineScript({
  NUMBER_OF_KEYS: 2,
  SCRIPT: `
    local current = tonumber(redis.call('GET', KEYS[1]))
    local count = tonumber(ARGV[1])
    if current and current > count then return 0 end
    redis.call('SET', KEYS[1], ARGV[1])
    if current == count and redis.call('PEXPIRETIME', KEYS[2]) >= tonumber(ARGV[2]) then
      return 1
    end
    redis.call('SET', KEYS[2], '1', 'PXAT', ARGV[2])
    return 1`,
  parseCommand(parser, key: string, count: number, freshUntil: number) {
    parser.pushKeys([key, freshKey(key)]);
    parser.push(String(count), String(Math.round(freshUntil)));
  },
  transformReply: undefined as unknown as () => number,
});

const freshKey = (key: string) => `${key}:fresh`;

/** A cached count, and whether PostgreSQL confirmed it within the cache's lifetime. */
export interface CachedCount {
  count: number;
  fresh: boolean;
}

const scripts = { raise: RAISE };

// biome-ignore lint/complexity/noBannedTypes: node-redis' own "no modules, no functions" defaults.
type RedisClient = RedisClientType<{}, {}, typeof scripts>;

/**
 * The count cache. Every call either answers within `timeoutMs` or fails, and while
 * Redis is unreachable calls fail at once: the counter then reads PostgreSQL instead.
 */
export class RedisCache {
  readonly #client: RedisClient;
  readonly #timeoutMs: number;
  readonly #ttlSeconds: number;
  readonly #logger: Logger;
  #replacing = false;

  constructor(options: RedisCacheOptions, logger: Logger) {
    this.#timeoutMs = options.timeoutMs;
    this.#ttlSeconds = options.ttlSeconds;
    this.#logger = logger;
    this.#client = createClient({
      url: options.url,
      ...(options.password ? { password: options.password } : {}),
      // While disconnected, commands fail at once instead of queueing behind the outage.
      disableOfflineQueue: true,
      socket: {
        // A connection to a cache nearby takes well under a millisecond.
        connectTimeout: 500,
        // Keep retrying forever, at most every 500 ms, so a returning Redis is used again quickly.
        reconnectStrategy: (retries) => Math.min(50 * 2 ** retries, 500),
      },
      scripts,
    });
    // Without an 'error' listener a connection error would crash the process.
    let lastError = "";
    this.#client.on("error", (error: Error) => {
      // Reconnect attempts repeat the same error every 500 ms: log each kind once.
      if (error.message !== lastError) logger.warn({ err: error }, "redis: connection error");
      lastError = error.message;
    });
    // Registered before any onReady listener, so those already see isReady.
    this.#client.on("ready", () => {
      lastError = "";
      this.#replacing = false;
      logger.info("redis: ready");
    });
  }

  /** Connected and not being replaced after a missed deadline. */
  get isReady(): boolean {
    return this.#client.isReady && !this.#replacing;
  }

  /** Called after every (re)connection: Redis may come back empty, or with older data. */
  onReady(listener: () => void): void {
    this.#client.on("ready", listener);
  }

  /** Connects in the background, retrying until Redis answers. */
  connect(): void {
    this.#client.connect().catch((error: unknown) => {
      this.#logger.warn({ err: error }, "redis: connect failed");
    });
  }

  /** The cached count, or null when there is none. */
  async get(key: string): Promise<CachedCount | null> {
    const [value, fresh] = await this.#call(() => this.#client.mGet([key, freshKey(key)]));
    const count = Number(value ?? Number.NaN);
    if (!Number.isSafeInteger(count) || count < 0) return null;
    return { count, fresh: fresh !== null && fresh !== undefined };
  }

  /**
   * Raises the cached count to `count` (never lowers it), a count PostgreSQL confirmed
   * at `confirmedAt` (ms since the epoch): fresh until `confirmedAt` + ttlSeconds.
   */
  async raise(key: string, count: number, confirmedAt: number): Promise<void> {
    const freshUntil = confirmedAt + this.#ttlSeconds * 1000;
    await this.#call(() => this.#client.raise(key, count, freshUntil));
  }

  async ping(): Promise<void> {
    await this.#call(() => this.#client.ping());
  }

  /** Closes the connection at once: nothing sent to a cache needs waiting for. */
  close(): void {
    if (this.#client.isOpen) this.#client.destroy();
  }

  /**
   * node-redis times out a command only until it is written; one already sent waits
   * for its reply forever (Redis frozen, network gone). So every call gets a deadline
   * here, and a missed one replaces the connection: the commands behind it fail at
   * once instead of each waiting, and the new connection becomes ready (and the cache
   * is refreshed, see onReady) only once Redis answers again.
   */
  async #call<T>(command: () => Promise<T>): Promise<T> {
    if (!this.isReady) throw new Error("redis: not connected");
    try {
      return await withDeadline(command(), this.#timeoutMs, "redis: no answer");
    } catch (error) {
      if (error instanceof Error && error.name === "DeadlineError") this.#replace();
      throw error;
    }
  }

  #replace(): void {
    if (this.#replacing) return;
    this.#replacing = true;
    this.#logger.warn("redis: a command missed its deadline; reconnecting");
    this.#client.destroy();
    // Ready (and #replacing cleared) once Redis answers the new connection's handshake.
    this.#client.connect().catch((error: unknown) => {
      this.#replacing = false;
      this.#logger.warn({ err: error }, "redis: reconnect failed");
    });
  }
}
