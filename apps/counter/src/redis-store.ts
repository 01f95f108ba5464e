import type { Logger } from "@app/server";
import { createClient, defineScript, type RedisClientType } from "redis";

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
 */
const INCREMENT_FROM_FLOOR = defineScript({
  NUMBER_OF_KEYS: 1,
  SCRIPT: `
    local current = redis.call('GET', KEYS[1])
    local floor = tonumber(ARGV[1])
    if not current then
      if ARGV[2] ~= 'seed' then return false end
      redis.call('SET', KEYS[1], floor)
    elseif tonumber(current) < floor then
      redis.call('SET', KEYS[1], floor)
    end
    return redis.call('INCR', KEYS[1])`,
  parseCommand(parser, key: string, floor: number, seed: boolean) {
    parser.pushKey(key);
    parser.push(String(floor), seed ? "seed" : "no-seed");
  },
  transformReply: undefined as unknown as () => number | null,
});

const scripts = { incrementFromFloor: INCREMENT_FROM_FLOOR };

// biome-ignore lint/complexity/noBannedTypes: node-redis' own "no modules, no functions" defaults.
export type RedisClient = RedisClientType<{}, {}, typeof scripts>;

export function createRedisClient(options: RedisOptions, logger: Logger): RedisClient {
  const client = createClient({
    url: options.url,
    ...(options.password ? { password: options.password } : {}),
    // While disconnected, commands fail at once instead of queueing: requests
    // take the PostgreSQL path immediately rather than hang until Redis returns.
    disableOfflineQueue: true,
    // A command that gets no answer (Redis frozen, network gone) fails too.
    commandOptions: { timeout: options.commandTimeoutMs },
    socket: {
      connectTimeout: 1_000,
      // Keep retrying forever, at most every 500 ms, so a returning Redis is used again quickly.
      reconnectStrategy: (retries) => Math.min(50 * 2 ** retries, 500),
    },
    scripts,
  });
  // Without an 'error' listener a connection error would crash the process.
  let lastError = "";
  client.on("error", (error: Error) => {
    // Reconnect attempts repeat the same error every 500 ms: log each kind once.
    if (error.message !== lastError) logger.warn({ err: error }, "redis: connection error");
    lastError = error.message;
  });
  client.on("ready", () => {
    lastError = "";
    logger.info("redis: ready");
  });
  return client;
}
