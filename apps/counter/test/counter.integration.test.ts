import request from "supertest";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { type StoreContainer, startPostgres, startRedis } from "./support/containers.ts";
import { CounterInstance, eventually, uniqueId } from "./support/counter-instance.ts";
import { expectRetriesCountedOnce } from "./support/retries.ts";

// Real PostgreSQL and Redis (Testcontainers), healthy the whole time. Outages are
// in outages.integration.test.ts. Each test uses its own counter id.
let postgres: StoreContainer;
let redis: StoreContainer;
const instances: CounterInstance[] = [];

async function instance(options: { id: string; flushIntervalMs?: number }) {
  const created = await new CounterInstance({ postgres, redis, ...options }).start();
  instances.push(created);
  return created;
}

beforeAll(async () => {
  [postgres, redis] = await Promise.all([startPostgres(), startRedis()]);
});
afterEach(async () => {
  await Promise.all(instances.splice(0).map((created) => created.close()));
});
afterAll(async () => {
  await Promise.all([postgres?.remove(), redis?.remove()]);
});

describe("visit counter with both stores up", () => {
  it("1. counts with an atomic Redis INCR and answers this visit's number", async () => {
    const id = uniqueId("hot-path");
    const app = (await instance({ id })).app;

    for (let expected = 1; expected <= 5; expected++) {
      const res = await request(app).post("/visits");
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ count: expected });
      expect(res.headers["x-counter-source"]).toBe("redis");
    }
    const current = await request(app).get("/visits");
    expect(current.body).toEqual({ count: 5 });
  });

  it("1. seeds a missing key from PostgreSQL exactly once when replicas race", async () => {
    const id = uniqueId("seed-race");
    const seeder = await instance({ id });
    await seeder.postgres.persistAtLeast(100);
    const replicas = [seeder, await instance({ id }), await instance({ id })];

    const counts = await Promise.all(
      Array.from({ length: 60 }, (_, i) => replicas[i % 3]?.counter.increment()),
    );
    const numbers = counts.map((visit) => visit?.count).sort((a, b) => (a ?? 0) - (b ?? 0));
    expect(numbers).toEqual(Array.from({ length: 60 }, (_, i) => 101 + i));
    expect(await seeder.redisCount(id)).toBe(160);
  });

  it("a retry with the same Idempotency-Key gets the first number on any replica, counted once", async () => {
    const id = uniqueId("idempotent-redis");
    const [first, second] = [await instance({ id }), await instance({ id })];
    await request(first.app).post("/visits");
    await expectRetriesCountedOnce(first, second, "redis");
    expect(await first.redisCount(id)).toBe(4);
  });

  it("2. writes behind to PostgreSQL coalesced, within 1 s", async () => {
    const id = uniqueId("write-behind");
    const created = await instance({ id, flushIntervalMs: 200 });
    const persist = vi.spyOn(created.postgres, "persistAtLeast");

    await Promise.all(Array.from({ length: 200 }, () => request(created.app).post("/visits")));
    const lagMs = await eventually(() => created.postgresCount(), 200, 5_000);

    console.info(
      `write-behind: 200 visits persisted with ${persist.mock.calls.length} writes, lag ${lagMs} ms`,
    );
    expect(lagMs).toBeLessThanOrEqual(1_000);
    expect(persist.mock.calls.length).toBeLessThan(20);
  });

  it("2. write-behind is monotonic and idempotent", async () => {
    const id = uniqueId("monotonic");
    const created = await instance({ id });
    await created.postgres.persistAtLeast(50);
    await created.postgres.persistAtLeast(50);
    await created.postgres.persistAtLeast(10);
    expect(await created.postgresCount()).toBe(50);
  });

  it("2. flushes pending counts on graceful shutdown", async () => {
    const id = uniqueId("shutdown-flush");
    // An interval so long that only the shutdown flush can persist the visits.
    const created = await instance({ id, flushIntervalMs: 600_000 });
    for (let i = 0; i < 7; i++) await created.counter.increment();
    expect(await created.postgresCount()).toBe(0);

    await created.counter.stop();
    expect(await created.postgresCount()).toBe(7);
  });

  it("6. reloads from PostgreSQL plus pending write-behind after Redis is emptied", async () => {
    const id = uniqueId("flushall");
    const created = await instance({ id, flushIntervalMs: 600_000 });
    await created.postgres.persistAtLeast(40);
    for (let i = 0; i < 10; i++) await created.counter.increment(); // 41..50, not yet persisted
    expect(await created.postgresCount()).toBe(40);

    await redis.exec(["redis-cli", "FLUSHALL"]);
    expect(await created.redisCount(id)).toBeNull();

    const res = await request(created.app).post("/visits");
    expect(res.body).toEqual({ count: 51 });
    expect(await created.redisCount(id)).toBe(51);
  });

  it("GET /visits is a cache-aside read: Redis, else PostgreSQL, then Redis is populated", async () => {
    const id = uniqueId("cache-aside");
    const created = await instance({ id });
    await created.postgres.persistAtLeast(33);

    const first = await request(created.app).get("/visits");
    expect(first.body).toEqual({ count: 33 });
    expect(first.headers["x-counter-source"]).toBe("postgres");
    expect(await created.redisCount(id)).toBe(33);

    const second = await request(created.app).get("/visits");
    expect(second.body).toEqual({ count: 33 });
    expect(second.headers["x-counter-source"]).toBe("redis");
  });

  it("1000 concurrent POST /visits over real sockets: all distinct, Redis and PostgreSQL +1000", async () => {
    const id = uniqueId("concurrency");
    const created = await instance({ id });
    const url = await created.listen();

    const responses = await Promise.all(
      Array.from({ length: 1000 }, async () => {
        const res = await fetch(`${url}/visits`, { method: "POST" });
        expect(res.status).toBe(200);
        return ((await res.json()) as { count: number }).count;
      }),
    );

    expect(new Set(responses).size).toBe(1000);
    expect(Math.min(...responses)).toBe(1);
    expect(Math.max(...responses)).toBe(1000);
    expect(await created.redisCount(id)).toBe(1000);
    const lagMs = await eventually(() => created.postgresCount(), 1000, 5_000);
    console.info(`concurrency: 1000 distinct numbers, PostgreSQL caught up in ${lagMs} ms`);
  });

  it("a fresh instance with an empty Redis continues from PostgreSQL", async () => {
    const id = uniqueId("persistence");
    const first = await instance({ id });
    for (let i = 0; i < 25; i++) await first.counter.increment();
    await first.close();
    instances.splice(instances.indexOf(first), 1);
    await redis.exec(["redis-cli", "DEL", id]);

    const second = await instance({ id });
    const res = await request(second.app).post("/visits");
    expect(res.body).toEqual({ count: 26 });
  });

  it("creates its schema idempotently, including on an existing database", async () => {
    const id = uniqueId("migration");
    const created = await instance({ id });
    await created.postgres.ensureSchema();
    const again = await instance({ id });
    await expect(again.postgres.ensureSchema()).resolves.toBeUndefined();
    const table = await created.postgres.pool.query(
      "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'visit_counts' ORDER BY ordinal_position",
    );
    expect(table.rows).toEqual([
      { column_name: "id", data_type: "text" },
      { column_name: "count", data_type: "bigint" },
    ]);
  });
});
