import type { Logger } from "@app/server";
import { createClient, defineScript, type RedisClientType } from "@redis/client";
import type { CounterConfig } from "./config.ts";

/**
 * Stores a count to expire at ARGV[2] (PXAT): a lower count than the cached one changes
 * nothing, and the expiry is never shortened. Why that bounds every read: the read
 * paragraph of docs/COUNTER.md.
 */
const STORE = defineScript({
  NUMBER_OF_KEYS: 1,
  SCRIPT: `
    local expires = tonumber(ARGV[2])
    local current = redis.call('GET', KEYS[1])
    if current then
      if tonumber(current) > tonumber(ARGV[1]) then return 0 end
      expires = math.max(expires, redis.call('PEXPIRETIME', KEYS[1]))
    end
    redis.call('SET', KEYS[1], ARGV[1], 'PXAT', string.format('%d', expires))
    return 1`,
  parseCommand(parser, key: string, count: number, expiresAt: number) {
    parser.pushKey(key);
    parser.push(String(count), String(Math.round(expiresAt)));
  },
  transformReply: undefined as unknown as () => number,
});

const scripts = { store: STORE };

// biome-ignore lint/complexity/noBannedTypes: node-redis' own "no modules, no functions" defaults.
type RedisClient = RedisClientType<{}, {}, typeof scripts>;

/**
 * The count cache. Every call answers within REDIS_COMMAND_TIMEOUT_MS or fails: a late
 * answer (Redis frozen, or an event-loop stall) costs that one call, never the
 * connection. While Redis is unreachable, or frozen with 1,000 commands unanswered,
 * calls fail at once.
 */
export class RedisCache {
  readonly #client: RedisClient;
  readonly #ttlMs: number;
  readonly #timeoutMs: number;

  constructor(config: CounterConfig, logger: Logger) {
    this.#ttlMs = config.CACHE_TTL_SECONDS * 1000;
    this.#timeoutMs = config.REDIS_COMMAND_TIMEOUT_MS;
    this.#client = createClient({
      url: config.REDIS_URL,
      ...(config.REDIS_PASSWORD ? { password: config.REDIS_PASSWORD } : {}),
      // While disconnected, commands fail at once instead of queueing behind the outage.
      disableOfflineQueue: true,
      // A frozen Redis holds every command sent to it: past this many, fail at once.
      commandsQueueMaxLength: 1_000,
      // #within is every call's deadline. node-redis' own (5 s by default) arms an
      // AbortSignal.timeout per command, whose timer fires and allocates long after the
      // answer: 2–3 % of the counter's CPU under load (docs/PERFORMANCE.md).
      commandOptions: { timeout: 0 },
      socket: {
        // A connection to a cache nearby takes well under a millisecond.
        connectTimeout: 500,
        // Keep retrying forever, at most every 500 ms, so a returning Redis is used again quickly.
        reconnectStrategy: (retries) => Math.min(50 * 2 ** retries, 500),
      },
      scripts,
    }) as RedisClient;
    // Without an 'error' listener a connection error would crash the process.
    let lastError = "";
    this.#client.on("error", (error: Error) => {
      // Reconnect attempts repeat the same error every 500 ms: log each kind once.
      if (error.message !== lastError) logger.warn({ err: error }, "redis: connection error");
      lastError = error.message;
    });
    this.#client.on("ready", () => {
      lastError = "";
      logger.info("redis: ready");
    });
    // In the background, retrying until Redis answers: the app starts without it.
    this.#client
      .connect()
      .catch((error: unknown) => logger.warn({ err: error }, "redis: connect failed"));
  }

  /** The cached count, or null when there is none (missing or expired). */
  async get(key: string): Promise<number | null> {
    const value = await this.#within(this.#client.get(key));
    const count = Number(value ?? Number.NaN);
    return Number.isSafeInteger(count) && count >= 0 ? count : null;
  }

  /** Caches `count`, which PostgreSQL confirmed at `confirmedAt` (ms since the epoch). */
  async store(key: string, count: number, confirmedAt: number): Promise<void> {
    await this.#within(this.#client.store(key, count, confirmedAt + this.#ttlMs));
  }

  async ping(): Promise<void> {
    await this.#within(this.#client.ping());
  }

  /** `command`, or an error after the deadline (node-redis' own is off: see the constructor). */
  #within<T>(command: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("redis: no answer in time")), this.#timeoutMs);
    });
    return Promise.race([command, late]).finally(() => clearTimeout(timer));
  }

  /** Closes the connection at once: nothing sent to a cache needs waiting for. */
  close(): void {
    if (this.#client.isOpen) this.#client.destroy();
  }
}
