import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "@app/test-support";
import {
  type CheckResult,
  checkHistory,
  type History,
  now,
  startVisitors,
  summarize,
  type Window,
} from "@app/visit-history";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
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
// the read promise. Each drill also shows, from the same history, that its fault took
// effect: a drill whose fault did nothing fails.

let postgres: StoreContainer;
let redis: RedisContainer;
let pool: pg.Pool;
const replicas: CounterProcess[] = [];

/**
 * Longer than a drill: visits keep the cached count alive, so a read that misses the
 * cache (X-Cache: miss) is one that a fault made miss.
 */
const CACHE_TTL_SECONDS = 30;
/** The replicas' PostgreSQL deadline: a 503 comes within it. */
const POSTGRES_TIMEOUT_MS = 1_000;

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
  // A new counter's row: replicas never create it (the migrate job made only "visits"'s).
  await pool.query(
    "INSERT INTO visit_counts (id, count) VALUES ($1, 0) ON CONFLICT (id) DO NOTHING",
    [id],
  );
  for (let i = 0; i < 2; i++) {
    const replica = await CounterProcess.start({
      postgres,
      redis,
      id,
      port: await freePort(),
      env: {
        CACHE_TTL_SECONDS: String(CACHE_TTL_SECONDS),
        POSTGRES_TIMEOUT_MS: String(POSTGRES_TIMEOUT_MS),
        ...env,
      },
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
  env?: Record<string, string>;
}

interface Drill {
  result: CheckResult;
  history: History;
  /** When each fault was applied, and the moment it was over. */
  faults: Window[];
}

/** Whether `at` lies in one of `windows`. */
const during = (windows: Window[], at: number) =>
  windows.some((window) => at >= window.from && at <= window.to);

/** Evidence: reads that missed the cache inside and outside the faults. */
function cacheMisses({ history, faults }: Drill) {
  const misses = history.reads.filter((read) => read.cache === "miss");
  return {
    during: misses.filter((read) => during(faults, read.start)).length,
    outside: misses.filter((read) => !during(faults, read.start)).length,
  };
}

/** Evidence: the POSTs answered 503 during the faults (how long each took), and outside. */
function unavailableVisits({ history, faults }: Drill): { took: number[]; outside: number } {
  const unavailable = history.visits
    .flatMap((visit) => visit.attempts)
    .filter((attempt) => attempt.status === 503);
  return {
    took: unavailable
      .filter((attempt) => during(faults, attempt.start))
      .map((attempt) => attempt.end - attempt.start),
    outside: unavailable.filter((attempt) => !during(faults, attempt.start)).length,
  };
}

async function drill(name: string, options: DrillOptions): Promise<Drill> {
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
  for (let round = 1; round <= 3; round++) {
    await sleep(500);
    const from = now();
    await options.fault(round, counters);
    // A little past the fault's end: the replicas reconnect.
    faults.push({ from, to: now() + 500, label: `${name} ${round}` });
    // Long enough for the replicas to reconnect and count steadily again.
    await sleep(round === 3 ? 2_000 : 1_500);
  }
  const history = await visitors.stop();
  const result = checkHistory(history, {
    initialCount,
    finalCount: await postgresCount(id),
    cacheTtlMs: CACHE_TTL_SECONDS * 1000,
    durableKeys: await durableKeys(id),
  });
  const drilled = { result, history, faults };
  const misses = cacheMisses(drilled);
  const { took, outside } = unavailableVisits(drilled);
  console.info(
    `${name}: ${summarize(result)}; evidence: cache misses ${misses.during} during the faults, ` +
      `${misses.outside} outside; 503s ${took.length} during them (slowest after ` +
      `${Math.round(Math.max(0, ...took))} ms), ${outside} outside`,
  );
  expect(result.violations, counters.map((c) => c.output.slice(-20).join("\n")).join("\n")).toEqual(
    [],
  );
  // A drill whose visitors never got through proves nothing.
  expect(result.acknowledged).toBeGreaterThan(100);
  expect(result.readsChecked).toBeGreaterThan(10);
  return drilled;
}

/** Every visit acknowledged: a cache fault never fails a visit. */
const noFailures = ({ result }: Drill) => expect(result.unanswered).toBe(0);

/**
 * The fault made reads miss the cache: while visits go on, every batch renews the cached
 * count's expiry (CACHE_TTL_SECONDS), so it does not lapse; without the fault a read misses
 * only when the machine stalls past the cache deadline, as likely outside the faults as
 * during them.
 */
function cacheFaultSeen(drilled: Drill) {
  const misses = cacheMisses(drilled);
  expect(misses.during).toBeGreaterThanOrEqual(5);
  expect(misses.during).toBeGreaterThan(2 * misses.outside);
}

/**
 * The fault made visits fail fast: 503s during it (many more than a busy machine's missed
 * deadlines cause outside it), each within the PostgreSQL deadline.
 */
function databaseFaultSeen(drilled: Drill, withinMs: number) {
  const { took, outside } = unavailableVisits(drilled);
  expect(took.length).toBeGreaterThanOrEqual(3);
  expect(took.length).toBeGreaterThan(2 * outside);
  expect(Math.max(...took)).toBeLessThan(withinMs);
}

/** Reads went on from the cache while PostgreSQL was away. */
function readsServedByTheCache({ history, faults }: Drill) {
  const hits = history.reads.filter(
    (read) => read.status === 200 && read.cache === "hit" && during(faults, read.start),
  );
  expect(hits.length).toBeGreaterThan(0);
}

describe("cache faults: counting goes on unchanged, no visit fails, reads miss the cache", () => {
  it("Redis stopped and started", async () => {
    const drilled = await drill("redis-stop", {
      fault: async () => {
        await redis.stop();
        await sleep(1_000);
        await redis.start();
        await redis.waitUntilReady();
      },
    });
    noFailures(drilled);
    cacheFaultSeen(drilled);
  });

  it("Redis SIGKILLed and started", async () => {
    const drilled = await drill("redis-kill", {
      fault: async () => {
        await redis.kill();
        await sleep(500);
        await redis.start();
        await redis.waitUntilReady();
      },
    });
    noFailures(drilled);
    cacheFaultSeen(drilled);
  });

  it("Redis restarted from an older data file", async () => {
    // The old file's count is still alive when it comes back (its expiry is CACHE_TTL after
    // its confirmation): reads may show it, within the promise.
    const drilled = await drill("redis-old-file", {
      fault: async () => {
        await redis.saveSnapshot();
        await sleep(800); // counting goes on past the snapshot
        await redis.stop();
        await redis.restoreSnapshot();
        await redis.start();
        await redis.waitUntilReady();
      },
    });
    noFailures(drilled);
    cacheFaultSeen(drilled);
  });

  it("Redis paused (frozen, connections open) for 1.5 s", async () => {
    const drilled = await drill("redis-pause", {
      fault: async () => {
        await redis.pause();
        await sleep(1_500);
        await redis.unpause();
      },
    });
    noFailures(drilled);
    cacheFaultSeen(drilled);
  });

  it("Redis emptied (FLUSHALL) again and again for a second", async () => {
    // Every batch writes the count again at once: emptied once, the cache would be full
    // again before most reads could see it empty.
    const drilled = await drill("redis-flushall", {
      fault: async () => {
        await redis.exec([
          "sh",
          "-c",
          "for i in $(seq 50); do redis-cli FLUSHALL; sleep 0.02; done",
        ]);
      },
    });
    noFailures(drilled);
    cacheFaultSeen(drilled);
  });
});

describe("database faults: fast 503s, reads from the cache, nothing acknowledged that is not durable", () => {
  it("PostgreSQL stopped and started", async () => {
    const drilled = await drill("postgres-stop", {
      fault: async () => {
        await postgres.stop();
        await sleep(1_000);
        await postgres.start();
        await postgres.waitUntilReady();
      },
    });
    // Refused connections fail at once; a batch in flight when the server stopped, within
    // the deadline.
    databaseFaultSeen(drilled, POSTGRES_TIMEOUT_MS + 500);
    readsServedByTheCache(drilled);
  });

  it("PostgreSQL paused (frozen, connections open) for 1.5 s", async () => {
    const drilled = await drill("postgres-pause", {
      fault: async () => {
        await postgres.pause();
        await sleep(1_500);
        await postgres.unpause();
      },
    });
    // The deadline itself, plus the time an answer takes on a loaded 2-core machine.
    databaseFaultSeen(drilled, POSTGRES_TIMEOUT_MS + 500);
    readsServedByTheCache(drilled);
  });

  it("PostgreSQL SIGKILLed and started", async () => {
    const drilled = await drill("postgres-kill", {
      fault: async () => {
        await postgres.kill();
        await sleep(500);
        await postgres.start();
        await postgres.waitUntilReady();
      },
    });
    databaseFaultSeen(drilled, POSTGRES_TIMEOUT_MS + 500);
    readsServedByTheCache(drilled);
  });

  it("both stores down, then back", async () => {
    const drilled = await drill("both-down", {
      fault: async () => {
        await Promise.all([postgres.stop(), redis.stop()]);
        await sleep(1_000);
        await Promise.all([postgres.start(), redis.start()]);
        await Promise.all([postgres.waitUntilReady(), redis.waitUntilReady()]);
      },
    });
    databaseFaultSeen(drilled, POSTGRES_TIMEOUT_MS + 500);
  });
});

describe("replica faults", () => {
  it("a counter replica SIGKILLed mid-stream and replaced", async () => {
    const killed: string[] = [];
    const drilled = await drill("replica-kill", {
      fault: async (round, counters) => {
        const victim = counters[round % 2];
        if (!victim) throw new Error("no replica");
        killed.push(victim.url);
        await victim.kill("SIGKILL");
        await sleep(300);
        await victim.start();
      },
    });
    // Evidence: requests to a killed replica found nobody there.
    const refused = drilled.history.visits
      .flatMap((visit) => visit.attempts)
      .filter((attempt) => attempt.status === 0 && killed.includes(attempt.target));
    expect(refused.length).toBeGreaterThan(0);
  });
});

describe("deadlines", () => {
  it("with both stores frozen, a visit is answered 503 within its deadline, every time", async () => {
    const [counter] = await startReplicas(uniqueId("frozen"));
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
    // The whole request's deadline, never one per statement; the cache is not on the way.
    for (const ms of took) expect(ms).toBeLessThan(POSTGRES_TIMEOUT_MS + 500);
  });

  it("a replica with the cache frozen stops within a second of SIGTERM, with exit code 0", async () => {
    const [counter] = await startReplicas(uniqueId("shutdown"));
    if (!counter) throw new Error("no replica");
    await fetch(`${counter.url}/visits`, { method: "POST" });
    await redis.pause();
    await fetch(`${counter.url}/visits`, { method: "POST" }); // its cache write never returns
    const started = now();
    const code = await counter.kill("SIGTERM");
    const tookMs = now() - started;
    console.info(`shutdown with the cache frozen: exit ${code} after ${Math.round(tookMs)} ms`);
    expect(code).toBe(0);
    expect(tookMs).toBeLessThan(1_000);
  });
});
