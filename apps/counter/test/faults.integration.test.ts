import { setTimeout as sleep } from "node:timers/promises";
import {
  type CheckResult,
  checkHistory,
  now,
  startVisitors,
  summarize,
  type Window,
} from "@app/visit-history";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  freePort,
  POSTGRES_CREDENTIALS,
  type RedisContainer,
  type StoreContainer,
  startPostgres,
  startRedis,
} from "./support/containers.ts";
import { uniqueId } from "./support/counter-instance.ts";
import { CounterProcess } from "./support/counter-process.ts";

// Each fault, three times in a row, under concurrent visitors (keyed and not, retrying,
// reading) spread over two counter replicas that run as real processes. Every attempt
// is recorded and the history is checked afterwards (@app/visit-history): unique
// numbers, PostgreSQL's count = acknowledged + phantoms, replays, real-time order, and
// the read guarantee.

let postgres: StoreContainer;
let redis: RedisContainer;
let pool: pg.Pool;
const replicas: CounterProcess[] = [];

/** Short, so the reads exempt after a cache fault (its lifetime) are few. */
const CACHE_TTL_SECONDS = 1;

beforeAll(async () => {
  [postgres, redis] = await Promise.all([startPostgres(), startRedis()]);
  pool = new pg.Pool({ host: postgres.host, port: postgres.port, ...POSTGRES_CREDENTIALS });
  // The drills stop PostgreSQL under this pool's idle connections too.
  pool.on("error", () => {});
});
afterEach(async () => {
  await Promise.all(replicas.splice(0).map((replica) => replica.kill("SIGKILL")));
  // Whatever a test did, the next one starts with both stores up.
  await Promise.all([redis.unpause().catch(() => {}), postgres.unpause().catch(() => {})]);
  await Promise.all([postgres.start(), redis.start()]);
  await Promise.all([postgres.waitUntilReady(), redis.waitUntilReady()]);
});
afterAll(async () => {
  await pool?.end();
  await Promise.all([postgres?.remove(), redis?.remove()]);
});

async function startReplicas(id: string, env: Record<string, string> = {}) {
  for (let i = 0; i < 2; i++) {
    const replica = await CounterProcess.start({
      postgres,
      redis,
      id,
      port: await freePort(),
      env: { CACHE_TTL_SECONDS: String(CACHE_TTL_SECONDS), ...env },
    });
    replicas.push(replica);
  }
  return replicas.slice(-2);
}

/** The numbers the database holds for the counter's Idempotency-Keys. */
async function durableKeys(id: string): Promise<Map<string, number>> {
  const { rows } = await pool.query<{ key: string; count: string }>(
    "SELECT key, count FROM visit_requests WHERE counter_id = $1",
    [id],
  );
  return new Map(rows.map((row) => [row.key, Number(row.count)]));
}

async function postgresCount(id: string): Promise<number> {
  const { rows } = await pool.query<{ count: string }>(
    "SELECT count FROM visit_counts WHERE id = $1",
    [id],
  );
  return Number(rows[0]?.count ?? 0);
}

interface DrillOptions {
  /** The fault, applied three times in a row, each between two steady phases. */
  fault: (round: number, counters: CounterProcess[]) => Promise<void>;
  /**
   * The fault empties the cache without a restart (FLUSHALL): reads during it and for
   * the cache's lifetime after it are exempt from the read guarantee.
   */
  cacheEmptied?: boolean;
  /** The fault makes PostgreSQL unreachable: reads during it may be marked stale. */
  databaseFault?: boolean;
  env?: Record<string, string>;
  cacheTtlSeconds?: number;
}

async function drill(name: string, options: DrillOptions): Promise<CheckResult> {
  const id = uniqueId(name);
  const counters = await startReplicas(id, options.env);
  const initialCount = await postgresCount(id);
  const visitors = startVisitors({
    targets: () => counters.map((counter) => counter.url),
    clients: 8,
    keyedShare: 0.5,
    readShare: 0.25,
    echoShare: 0.2,
    retries: 6,
    timeoutMs: 5_000,
  });
  const faults: Window[] = [];
  const ttlMs = (options.cacheTtlSeconds ?? CACHE_TTL_SECONDS) * 1000;
  for (let round = 1; round <= 3; round++) {
    await sleep(500);
    const from = now();
    await options.fault(round, counters);
    // Raises a frozen Redis buffered are applied when it resumes: the window starts then.
    faults.push({ from, to: now() + ttlMs + 100, label: `${name} ${round}` });
    // Long enough for the replicas to reconnect and count steadily again.
    await sleep(round === 3 ? 2_000 : 1_500);
  }
  const history = await visitors.stop();
  const result = checkHistory(history, {
    initialCount,
    finalCount: await postgresCount(id),
    readExemptions: options.cacheEmptied ? faults : [],
    // A visit whose answer said the cache missed it may be absent from reads this long.
    cacheMissGraceMs: ttlMs + 100,
    staleWindows: options.databaseFault ? faults : [],
    durableKeys: await durableKeys(id),
  });
  console.info(`${name}: ${summarize(result)}`);
  expect(result.violations, counters.map((c) => c.output.slice(-20).join("\n")).join("\n")).toEqual(
    [],
  );
  // A drill whose visitors never got through proves nothing.
  expect(result.acknowledged).toBeGreaterThan(100);
  expect(result.readsChecked).toBeGreaterThan(10);
  return result;
}

describe("cache faults: counting goes on unchanged, no visit fails", () => {
  const noFailures = (result: CheckResult) => expect(result.unanswered).toBe(0);

  it("Redis stopped and started", async () => {
    const result = await drill("redis-stop", {
      fault: async () => {
        await redis.stop();
        await sleep(1_000);
        await redis.start();
        await redis.waitUntilReady();
      },
    });
    noFailures(result);
  });

  it("Redis SIGKILLed and started", async () => {
    const result = await drill("redis-kill", {
      fault: async () => {
        await redis.kill();
        await sleep(500);
        await redis.start();
        await redis.waitUntilReady();
      },
    });
    noFailures(result);
  });

  it("Redis restarted from an older data file", async () => {
    // A lifetime longer than the snapshot's age when it comes back: the old file's count
    // is still "fresh", so only the refresh after the reconnection keeps it from reads.
    const result = await drill("redis-old-file", {
      cacheTtlSeconds: 3,
      env: { CACHE_TTL_SECONDS: "3" },
      fault: async () => {
        await redis.saveSnapshot();
        await sleep(800); // counting goes on past the snapshot
        await redis.stop();
        await redis.restoreSnapshot();
        await redis.start();
        await redis.waitUntilReady();
      },
    });
    noFailures(result);
  });

  it("Redis paused (frozen, connections open) for 1.5 s", async () => {
    const result = await drill("redis-pause", {
      fault: async () => {
        await redis.pause();
        await sleep(1_500);
        await redis.unpause();
      },
    });
    noFailures(result);
  });

  it("Redis emptied (FLUSHALL)", async () => {
    const result = await drill("redis-flushall", {
      cacheEmptied: true,
      fault: async () => {
        await redis.exec(["redis-cli", "FLUSHALL"]);
        await sleep(300);
      },
    });
    noFailures(result);
  });
});

describe("database faults: fast 503s, nothing acknowledged that is not durable", () => {
  it("PostgreSQL stopped and started", async () => {
    await drill("postgres-stop", {
      databaseFault: true,
      fault: async () => {
        await postgres.stop();
        await sleep(1_000);
        await postgres.start();
        await postgres.waitUntilReady();
      },
    });
  });

  it("PostgreSQL paused (frozen, connections open) for 1.5 s", async () => {
    await drill("postgres-pause", {
      databaseFault: true,
      fault: async () => {
        await postgres.pause();
        await sleep(1_500);
        await postgres.unpause();
      },
    });
  });

  it("PostgreSQL SIGKILLed and started", async () => {
    await drill("postgres-kill", {
      databaseFault: true,
      fault: async () => {
        await postgres.kill();
        await sleep(500);
        await postgres.start();
        await postgres.waitUntilReady();
      },
    });
  });

  it("both stores down, then back", async () => {
    await drill("both-down", {
      databaseFault: true,
      fault: async () => {
        await Promise.all([postgres.stop(), redis.stop()]);
        await sleep(1_000);
        await Promise.all([postgres.start(), redis.start()]);
        await Promise.all([postgres.waitUntilReady(), redis.waitUntilReady()]);
      },
    });
  });
});

describe("replica faults", () => {
  it("a counter replica SIGKILLed mid-stream and replaced", async () => {
    await drill("replica-kill", {
      fault: async (round, counters) => {
        const victim = counters[round % 2];
        if (!victim) throw new Error("no replica");
        await victim.kill("SIGKILL");
        await sleep(300);
        await victim.start();
      },
    });
  });
});

describe("deadlines", () => {
  it("with both stores frozen, a visit is answered 503 within its deadline, every time", async () => {
    const [counter] = await startReplicas(uniqueId("frozen"), { POSTGRES_TIMEOUT_MS: "1000" });
    if (!counter) throw new Error("no replica");
    await fetch(`${counter.url}/visits`, { method: "POST" });
    await Promise.all([postgres.pause(), redis.pause()]);
    const took: number[] = [];
    for (let i = 0; i < 3; i++) {
      const started = now();
      const res = await fetch(`${counter.url}/visits`, { method: "POST" });
      took.push(now() - started);
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({ error: expect.stringMatching(/unavailable/) });
    }
    console.info(`both stores frozen: 503 after ${took.map((ms) => Math.round(ms)).join(", ")} ms`);
    // The whole request's deadline (1 s) plus the cache's (50 ms), never one per statement.
    for (const ms of took) expect(ms).toBeLessThan(1_500);
  });

  it("a replica stops at once with the cache frozen: exit code 0", async () => {
    const [counter] = await startReplicas(uniqueId("shutdown"));
    if (!counter) throw new Error("no replica");
    await fetch(`${counter.url}/visits`, { method: "POST" });
    await redis.pause();
    await fetch(`${counter.url}/visits`, { method: "POST" }); // its raise misses the deadline
    const started = now();
    const code = await counter.kill("SIGTERM");
    console.info(
      `shutdown with the cache frozen: exit ${code} after ${Math.round(now() - started)} ms`,
    );
    expect(code).toBe(0);
  });
});
