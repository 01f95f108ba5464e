import pg from "pg";
import request from "supertest";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  migrateDatabase,
  OWNER_CREDENTIALS,
  type RedisContainer,
  type StoreContainer,
  startPostgres,
  startRedis,
} from "./support/containers.ts";
import { CounterInstance, uniqueId, until } from "./support/counter-instance.ts";
import { expectRetriesCountedOnce } from "./support/retries.ts";

// Real PostgreSQL and Redis (Testcontainers), in-process instances of the app; the
// faults (and real replica processes) are in faults.integration.test.ts. Each test
// uses its own counter id.
let postgres: StoreContainer;
let redis: RedisContainer;
const instances: CounterInstance[] = [];

async function instance(options: { id: string; cacheTtlSeconds?: number; keyTtlSeconds?: number }) {
  const created = await new CounterInstance({ postgres, redis, ...options }).start();
  instances.push(created);
  return created;
}

/** After a test dropped the tables: what an operator's restore would do, here a fresh schema. */
async function restoreSchema() {
  const owner = new pg.Client({ host: postgres.host, port: postgres.port, ...OWNER_CREDENTIALS });
  await owner.connect();
  try {
    await owner.query("DROP TABLE pgmigrations");
  } finally {
    await owner.end();
  }
  expect(await migrateDatabase(postgres)).toEqual(["0001_baseline"]);
}

const redisCli = async (...args: string[]) => (await redis.exec(["redis-cli", ...args])).trim();

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
  it("counts in PostgreSQL and answers this visit's number", async () => {
    const id = uniqueId("count");
    const app = (await instance({ id })).app;
    for (let expected = 1; expected <= 5; expected++) {
      const res = await request(app).post("/visits");
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ count: expected });
    }
    expect(await instances[0]?.postgresCount()).toBe(5);
  });

  it("concurrent visits on two replicas share transactions and get every number once", async () => {
    const id = uniqueId("batches");
    const [first, second] = [await instance({ id }), await instance({ id })];
    const batches = [
      vi.spyOn(first.postgres, "countBatch"),
      vi.spyOn(second.postgres, "countBatch"),
    ];
    const counted = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        ((i % 2 ? first : second) as CounterInstance).counter.increment(),
      ),
    );
    const numbers = counted.map((visit) => visit.count).sort((a, b) => a - b);
    expect(numbers).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(await first.postgresCount()).toBe(200);
    const transactions = batches.reduce((sum, spy) => sum + spy.mock.calls.length, 0);
    console.info(`200 concurrent visits on 2 replicas: ${transactions} transactions`);
    expect(transactions).toBeLessThan(20);
  });

  it("a retry with the same Idempotency-Key gets the first number on any replica, counted once", async () => {
    const id = uniqueId("idempotent");
    const [first, second] = [await instance({ id }), await instance({ id })];
    await request(first.app).post("/visits");
    await expectRetriesCountedOnce(first, second);
    expect(await first.postgresCount()).toBe(4);
  });

  it("counts a key repeated inside one batch once, and mixes keyed and plain visits", async () => {
    const id = uniqueId("mixed-batch");
    const created = await instance({ id });
    const keys = ["a", undefined, "b", "a", undefined, "b", "c"];
    const { visits, count } = await created.postgres.countBatch(keys, 1_000);
    expect(count).toBe(5);
    // The visits without a key get the start of the range (1, 2), the new keys the end,
    // in key order: a 3, b 4, c 5; a key again in the batch, its number.
    expect(visits.map((visit) => visit.count)).toEqual([3, 1, 4, 3, 2, 4, 5]);
    expect(visits[0]?.count).toBe(visits[3]?.count);
    expect(visits[3]?.replayed).toBe(true);
    expect(visits[2]?.count).toBe(visits[5]?.count);
    // A batch of replays alone counts nothing, and reports the count as it stands.
    const replays = await created.postgres.countBatch(["a", "c"], 1_000);
    expect(replays.count).toBe(5);
    expect(replays.visits.every((visit) => visit.replayed)).toBe(true);
    // Old keys and new ones in one batch: the old get their numbers back, the new the next.
    const both = await created.postgres.countBatch(["d", "b", undefined, "e"], 1_000);
    expect(both.count).toBe(8);
    expect(both.visits.map((visit) => [visit.count, visit.replayed])).toEqual([
      [7, false],
      [4, true],
      [6, false],
      [8, false],
    ]);
  });

  it("GET /visits is cache-aside: a hit from Redis, else PostgreSQL's count, which fills the cache", async () => {
    const id = uniqueId("cache-aside");
    const created = await instance({ id });
    const read = async () => {
      const res = await request(created.app).get("/visits");
      return `${res.body.count} ${res.headers["x-cache"]}`;
    };
    await request(created.app).post("/visits");
    // The visit's answer does not wait for the cache; the count reaches it right after.
    await until(read, "1 hit");
    await redisCli("DEL", created.cacheKey);
    expect(await read()).toBe("1 miss");
    await until(read, "1 hit");
  });

  it("a cached count is only ever raised, and expires TTL after PostgreSQL confirmed it", async () => {
    const id = uniqueId("store");
    const created = await instance({ id, cacheTtlSeconds: 60 });
    const key = created.cacheKey;
    const expiry = async () => Number(await redisCli("PEXPIRETIME", key));
    const confirmed = Date.now();
    await created.cache.store(key, 10, confirmed);
    expect(await created.cache.get(key)).toBe(10);
    expect(await expiry()).toBe(confirmed + 60_000);
    // A lower count (a late write from a stalled replica) changes nothing.
    await created.cache.store(key, 7, confirmed + 5_000);
    expect(await created.cache.get(key)).toBe(10);
    expect(await expiry()).toBe(confirmed + 60_000);
    // An equal or higher count confirmed earlier never shortens the life of the cached one
    // (it is at least as fresh); one confirmed later extends it.
    await created.cache.store(key, 12, confirmed - 30_000);
    expect(await created.cache.get(key)).toBe(12);
    expect(await expiry()).toBe(confirmed + 60_000);
    await created.cache.store(key, 12, confirmed + 1_000);
    expect(await expiry()).toBe(confirmed + 61_000);
    // A count whose life ended before Redis got it (buffered by a frozen Redis) is never stored.
    await redisCli("DEL", key);
    await created.cache.store(key, 15, Date.now() - 61_000);
    expect(await created.cache.get(key)).toBeNull();
  });

  it("under a steady read load, each replica reads PostgreSQL at most once per cache lifetime", async () => {
    const id = uniqueId("read-load");
    const ttlSeconds = 2;
    const replicas = [
      await instance({ id, cacheTtlSeconds: ttlSeconds }),
      await instance({ id, cacheTtlSeconds: ttlSeconds }),
    ];
    await replicas[0]?.counter.increment();
    const reads = replicas.map((replica) => vi.spyOn(replica.postgres, "read"));
    const urls = await Promise.all(replicas.map((replica) => replica.listen()));
    const seconds = 4;
    const until = Date.now() + seconds * 1000;
    let answered = 0;
    await Promise.all(
      Array.from({ length: 8 }, async (_, client) => {
        while (Date.now() < until) {
          const res = await fetch(`${urls[client % 2]}/visits`);
          expect(((await res.json()) as { count: number }).count).toBe(1);
          answered++;
        }
      }),
    );
    const postgresReads = reads.reduce((sum, spy) => sum + spy.mock.calls.length, 0);
    console.info(
      `${answered} reads in ${seconds} s on 2 replicas: ${postgresReads} PostgreSQL reads`,
    );
    expect(answered).toBeGreaterThan(100);
    // Per replica: one read per lifetime (concurrent misses share it), plus the first.
    expect(postgresReads).toBeLessThanOrEqual(2 * (seconds / ttlSeconds + 1));
  });

  it("tables dropped while the replica runs: visits 503, not ready, nothing re-created", async () => {
    const id = uniqueId("data-lost");
    const created = await instance({ id });
    await created.counter.increment();
    // Only the owner can (the counter's role may not: migrations.integration.test.ts).
    const owner = new pg.Client({ host: postgres.host, port: postgres.port, ...OWNER_CREDENTIALS });
    await owner.connect();
    try {
      await owner.query(
        "DROP TABLE visit_counts, visit_requests; DROP FUNCTION count_visits(text, text[], integer, timestamptz, integer)",
      );
    } finally {
      await owner.end();
    }
    for (let i = 0; i < 3; i++) {
      const visit = await request(created.app).post("/visits");
      expect(visit.status).toBe(503);
    }
    await expect(created.postgres.checkSchema()).rejects.toMatchObject({
      code: "SCHEMA_MISSING",
      message: expect.stringMatching(
        /table visit_counts, table visit_requests, function count_visits/,
      ),
    });
    expect((await request(created.app).get("/readyz")).status).toBe(503);
    // Still gone: nothing on any path put them back.
    const { rows } = await created.postgres.pool.query(
      "SELECT to_regclass('visit_counts') AS counts, to_regclass('visit_requests') AS requests",
    );
    expect(rows).toEqual([{ counts: null, requests: null }]);
    // The next test files start their own PostgreSQL; later tests here need the schema back.
    await restoreSchema();
  });

  it("the counter row deleted: visits 503 with P0002, reads 503, the row is not re-created", async () => {
    const id = uniqueId("row-lost");
    const created = await instance({ id, cacheTtlSeconds: 2 });
    await created.counter.increment();
    await created.postgres.pool.query("DELETE FROM visit_counts WHERE id = $1", [id]);
    await expect(created.postgres.countBatch([undefined], 1_000)).rejects.toMatchObject({
      code: "P0002",
      message: expect.stringMatching(/^counter row missing/),
    });
    expect((await request(created.app).post("/visits")).status).toBe(503);
    await expect(created.postgres.read()).rejects.toMatchObject({ code: "COUNTER_ROW_MISSING" });
    await expect(created.postgres.checkSchema()).rejects.toMatchObject({
      code: "COUNTER_ROW_MISSING",
    });
    const { rows } = await created.postgres.pool.query(
      "SELECT count(*)::int AS n FROM visit_counts WHERE id = $1",
      [id],
    );
    expect(rows).toEqual([{ n: 0 }]);
  });

  it("1000 concurrent POST /visits over real sockets: all distinct, PostgreSQL +1000", async () => {
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
    expect(await created.postgresCount()).toBe(1000);
    expect((await request(created.app).get("/visits")).body).toEqual({ count: 1000 });
  });

  it("deletes expired keys in each batch, oldest first, twice as many as the batch brings", async () => {
    const id = uniqueId("expiry");
    const created = await instance({ id, keyTtlSeconds: 60 });
    // A counter at 0 (its row made by instance()) whose 1,250 keys, from an earlier
    // life, have all expired.
    await created.postgres.pool.query(
      `INSERT INTO visit_requests (counter_id, key, count, created_at)
       SELECT $1, 'old-' || i, i, now() - interval '2 minutes' - i * interval '1 second'
       FROM generate_series(1, 1250) AS i`,
      [id],
    );
    const left = async () =>
      Number(
        (
          await created.postgres.pool.query<{ n: string }>(
            "SELECT count(*) AS n FROM visit_requests WHERE counter_id = $1 AND key LIKE 'old-%'",
            [id],
          )
        ).rows[0]?.n,
      );
    // A batch of 150 new keys deletes the 300 oldest expired ones.
    const keys = Array.from({ length: 150 }, (_, i) => `new-${i}`);
    expect((await created.postgres.countBatch(keys, 1_000)).count).toBe(150);
    expect(await left()).toBe(950);
    // A batch of one key deletes 100 (the least). A key that expired and was deleted counts again.
    expect((await created.postgres.countBatch(["old-1250"], 1_000)).visits).toEqual([
      { count: 151, replayed: false },
    ]);
    expect(await left()).toBe(851); // 100 deleted, old-1250 stored again
  });

  it("a new replica on a database with rows: the count carries over, keys still replay", async () => {
    const id = uniqueId("upgrade");
    // What the previous replica left: its count and a key it remembered.
    const created = await instance({ id });
    await created.postgres.pool.query("UPDATE visit_counts SET count = 500 WHERE id = $1", [id]);
    await created.postgres.pool.query(
      "INSERT INTO visit_requests (counter_id, key, count) VALUES ($1, 'kept', 480)",
      [id],
    );
    const upgraded = await instance({ id });
    expect(await upgraded.counter.increment()).toMatchObject({ count: 501, replayed: false });
    expect(await upgraded.counter.increment("kept")).toMatchObject({ count: 480, replayed: true });
    const table = await upgraded.postgres.pool.query(
      "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'visit_counts' ORDER BY ordinal_position",
    );
    expect(table.rows).toEqual([
      { column_name: "id", data_type: "text" },
      { column_name: "count", data_type: "bigint" },
    ]);
  });

  it("a replica starting while a batch holds its locks does not wait for it", async () => {
    const id = uniqueId("start-under-load");
    const created = await instance({ id });
    // An open transaction holding a key claim and the counter's row, as a batch in flight.
    const holder = await created.postgres.pool.connect();
    try {
      await holder.query("BEGIN");
      await holder.query(
        "INSERT INTO visit_requests (counter_id, key, count) VALUES ($1, 'held', 0)",
        [id],
      );
      await holder.query("UPDATE visit_counts SET count = count WHERE id = $1", [id]);
      const starting = new CounterInstance({ postgres, redis, id });
      instances.push(starting);
      // Its schema check only reads: it takes no lock the batch holds.
      await expect(starting.postgres.checkSchema()).resolves.toBeUndefined();
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
    }
  });
});
