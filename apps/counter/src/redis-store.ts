import type { Logger } from "@app/server";
import { createClient, defineScript, type RedisClientType } from "@redis/client";

export interface RedisOptions {
  url: string;
  password?: string | undefined;
  commandTimeoutMs: number;
}

/**
 * One atomic step for every increment. A missing key is a cache miss: without a
 * seed the script answers nil and the caller reloads the count from PostgreSQL;
 * with one it seeds the key. An existing key below `floor` (Redis restarted from
 * an older snapshot, or counts were taken in PostgreSQL meanwhile) is raised
 * first. Redis runs scripts one at a time, so replicas seeding together never
 * seed twice and numbers never repeat.
 *
 * With a request key (the client's Idempotency-Key) the number is remembered
 * under it for a while, and a retry of the same request gets the same number
 * back instead of a new one. Answers {count, 1 if replayed else 0}, or nil.
 */
const INCREMENT_FROM_FLOOR = defineScript({
  SCRIPT: `
    if KEYS[2] then
      local replayed = redis.call('GET', KEYS[2])
      if replayed then return {tonumber(replayed), 1} end
    end
    local current = redis.call('GET', KEYS[1])
    local floor = tonumber(ARGV[1])
    if not current then
      if ARGV[2] ~= 'seed' then return false end
      redis.call('SET', KEYS[1], floor)
    elseif tonumber(current) < floor then
      redis.call('SET', KEYS[1], floor)
    end
    local count = redis.call('INCR', KEYS[1])
    if KEYS[2] then redis.call('SET', KEYS[2], count, 'EX', ARGV[3]) end
    return {count, 0}`,
  // The number of keys varies (1 or 2), so it is sent as the first argument here
  // rather than declared as NUMBER_OF_KEYS.
  parseCommand(parser, key: string, floor: number, seed: boolean, request?: RequestKey) {
    parser.push(request ? "2" : "1");
    parser.pushKey(key);
    if (request) parser.pushKey(request.key);
    parser.push(String(floor), seed ? "seed" : "no-seed", String(request?.ttlSeconds ?? 0));
  },
  transformReply: undefined as unknown as () => [number, 0 | 1] | null,
});

/** Where a request's number is remembered in Redis, and for how long. */
export interface RequestKey {
  key: string;
  ttlSeconds: number;
}

/** The number a visit got, and whether it is a retry's earlier answer. */
export interface Increment {
  count: number;
  replayed: boolean;
}

const scripts = { incrementFromFloor: INCREMENT_FROM_FLOOR };

// biome-ignore lint/complexity/noBannedTypes: node-redis' own "no modules, no functions" defaults.
type RedisClient = RedisClientType<{}, {}, typeof scripts>;

/** Redis answered nothing within the command timeout. */
export class RedisTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`redis: no answer within ${timeoutMs} ms`);
    this.name = "RedisTimeoutError";
  }
}

/** The hot side of the counter: a node-redis client that fails fast instead of waiting. */
export class RedisStore {
  readonly #client: RedisClient;
  readonly #timeoutMs: number;
  readonly #logger: Logger;
  #reconnecting: Promise<void> | undefined;

  constructor(options: RedisOptions, logger: Logger) {
    this.#timeoutMs = options.commandTimeoutMs;
    this.#logger = logger;
    this.#client = createClient({
      url: options.url,
      ...(options.password ? { password: options.password } : {}),
      // While disconnected, commands fail at once instead of queueing: requests
      // take the PostgreSQL path immediately rather than hang until Redis returns.
      disableOfflineQueue: true,
      socket: {
        connectTimeout: 1_000,
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
    this.#client.on("ready", () => {
      lastError = "";
      logger.info("redis: ready");
    });
  }

  /** Connected, handshake done, and not being replaced after a timeout. */
  get isReady(): boolean {
    return this.#client.isReady && this.#reconnecting === undefined;
  }

  /** Called after every (re)connection. */
  onReady(listener: () => void): void {
    this.#client.on("ready", listener);
  }

  /** Resolves once connected; keeps retrying in the background until then. */
  async connect(): Promise<void> {
    await this.#client.connect();
  }

  /** The script above; null on a cache miss without `seed`. */
  async incrementFromFloor(
    key: string,
    floor: number,
    seed: boolean,
    request?: RequestKey,
  ): Promise<Increment | null> {
    const reply = await this.#call(() =>
      this.#client.incrementFromFloor(key, floor, seed, request),
    );
    return reply === null ? null : { count: Number(reply[0]), replayed: reply[1] === 1 };
  }

  async get(key: string): Promise<number | null> {
    const value = await this.#call(() => this.#client.get(key));
    return value === null ? null : Number(value);
  }

  /** SET NX, with an expiry when `ttlSeconds` is given. */
  async setIfAbsent(key: string, value: number, ttlSeconds?: number): Promise<void> {
    await this.#call(() =>
      this.#client.set(key, String(value), {
        condition: "NX",
        ...(ttlSeconds === undefined ? {} : { expiration: { type: "EX", value: ttlSeconds } }),
      }),
    );
  }

  async ping(): Promise<void> {
    await this.#call(() => this.#client.ping());
  }

  async close(): Promise<void> {
    await this.#reconnecting;
    if (this.#client.isOpen) await this.#client.close();
  }

  /**
   * node-redis times out a command only until it is written; one already sent
   * waits for its reply forever (Redis frozen, network gone). So every call gets
   * a deadline here, and a missed deadline replaces the connection: closing it
   * rejects every command still in flight, so no late reply can acknowledge a
   * number after the caller has fallen back to PostgreSQL.
   */
  async #call<T>(command: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RedisTimeoutError(this.#timeoutMs)), this.#timeoutMs);
    });
    try {
      return await Promise.race([command(), deadline]);
    } catch (error) {
      if (error instanceof RedisTimeoutError) this.#reconnect();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  #reconnect(): void {
    if (this.#reconnecting) return;
    this.#logger.warn("redis: a command timed out; reconnecting, counting in PostgreSQL meanwhile");
    this.#client.destroy();
    this.#reconnecting = this.#client
      .connect()
      .then(() => {})
      .catch((error: unknown) => this.#logger.warn({ err: error }, "redis: reconnect failed"))
      .finally(() => {
        this.#reconnecting = undefined;
      });
  }
}
