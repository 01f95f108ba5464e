import request from "supertest";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  batchSize,
  cacheRequests,
  postgresErrors,
  visitReplays,
  visitsCounted,
  visitsUnavailable,
} from "../src/metrics.ts";
import { type StoreContainer, startPostgres, startRedis } from "./support/containers.ts";
import { CounterInstance, uniqueId } from "./support/counter-instance.ts";

// The counter's own metrics (src/metrics.ts), as the counter code records them against
// real PostgreSQL and Redis. Metrics are process-wide, so each test compares before/after.
let postgres: StoreContainer;
let redis: StoreContainer;
let counter: CounterInstance;

beforeAll(async () => {
  [postgres, redis] = await Promise.all([startPostgres(), startRedis()]);
  counter = await new CounterInstance({ postgres, redis, id: uniqueId("metrics") }).start();
});
afterAll(async () => {
  await counter?.close();
  await Promise.all([postgres?.remove(), redis?.remove()]);
});

/** The current value of one series (a counter, or a histogram's _sum/_count). */
async function read(
  metric: { get(): Promise<{ values: { value: number; labels: object; metricName?: string }[] }> },
  match: (entry: { labels: Record<string, unknown>; metricName?: string }) => boolean = () => true,
): Promise<number> {
  const { values } = await metric.get();
  return values.find((entry) => match(entry as never))?.value ?? 0;
}
const histogram = (suffix: string) => (entry: { metricName?: string }) =>
  entry.metricName?.endsWith(suffix) ?? false;
const withLabel = (name: string, value: string) => (entry: { labels: Record<string, unknown> }) =>
  entry.labels[name] === value;

describe("counter metrics", () => {
  it("count visits, replays and batches as PostgreSQL commits them", async () => {
    const before = {
      visits: await read(visitsCounted),
      replays: await read(visitReplays),
      batchSum: await read(batchSize, histogram("_sum")),
      batches: await read(batchSize, histogram("_count")),
    };
    const batchCalls = vi.spyOn(counter.postgres, "countBatch");
    // 40 visits at once, 5 of them sent twice with the same key.
    await Promise.all([
      ...Array.from({ length: 35 }, () => counter.counter.increment()),
      ...Array.from({ length: 5 }, (_, i) => counter.counter.increment(`key-${i}`)),
      ...Array.from({ length: 5 }, (_, i) => counter.counter.increment(`key-${i}`)),
    ]);
    const batches = batchCalls.mock.calls.length;
    batchCalls.mockRestore();
    expect(batches).toBeGreaterThan(0);
    expect((await read(visitsCounted)) - before.visits).toBe(40);
    expect((await read(visitReplays)) - before.replays).toBe(5);
    expect((await read(batchSize, histogram("_sum"))) - before.batchSum).toBe(45);
    expect((await read(batchSize, histogram("_count"))) - before.batches).toBe(batches);
  });

  it("count a 503 and its PostgreSQL error by kind", async () => {
    const unavailable = await read(visitsUnavailable);
    const timeouts = await read(postgresErrors, withLabel("kind", "timeout"));
    vi.spyOn(counter.postgres, "countBatch").mockRejectedValueOnce(new Error("Query read timeout"));
    expect((await request(counter.app).post("/visits")).status).toBe(503);
    expect((await read(visitsUnavailable)) - unavailable).toBe(1);
    expect((await read(postgresErrors, withLabel("kind", "timeout"))) - timeouts).toBe(1);
  });

  it("count cache reads: a miss, then hits, then errors once Redis is gone", async () => {
    const fresh = await new CounterInstance({ postgres, redis, id: uniqueId("reads") }).start();
    try {
      const [hits = 0, misses = 0, errors = 0] = await Promise.all(
        ["hit", "miss", "error"].map((result) => read(cacheRequests, withLabel("result", result))),
      );
      const get = async () => (await request(fresh.app).get("/visits")).headers["x-cache"];
      // Nothing cached yet: a miss, whose PostgreSQL count is then cached (in the background).
      expect(await get()).toBe("miss");
      expect((await read(cacheRequests, withLabel("result", "miss"))) - misses).toBe(1);
      let hit = false;
      for (let tries = 0; !hit && tries < 100; tries++) hit = (await get()) === "hit";
      expect(hit).toBe(true);
      expect((await read(cacheRequests, withLabel("result", "hit"))) - hits).toBe(1);
      // Redis gone: every read is a cache error and goes to PostgreSQL.
      fresh.cache.close();
      expect(await get()).toBe("miss");
      expect((await read(cacheRequests, withLabel("result", "error"))) - errors).toBe(1);
    } finally {
      await fresh.close();
    }
  });
});
