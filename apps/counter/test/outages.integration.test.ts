import request from "supertest";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { type StoreContainer, startPostgres, startRedis } from "./support/containers.ts";
import { CounterInstance, eventually, uniqueId } from "./support/counter-instance.ts";
import { expectRetriesCountedOnce } from "./support/retries.ts";

// Stops, kills and restarts the real containers under a running app. Tests run
// one after another (vitest's default within a file) and leave both stores up.
let postgres: StoreContainer;
let redis: StoreContainer;
const instances: CounterInstance[] = [];

async function instance(id: string) {
  const created = await new CounterInstance({ postgres, redis, id }).start();
  instances.push(created);
  return created;
}

/** POST /visits, asserting the answer came quickly (no hang while a store is down). */
async function visit(created: CounterInstance) {
  const started = performance.now();
  const res = await request(created.app).post("/visits");
  const ms = performance.now() - started;
  expect(ms, `request took ${Math.round(ms)} ms`).toBeLessThan(1_000);
  return res;
}

beforeAll(async () => {
  [postgres, redis] = await Promise.all([startPostgres(), startRedis()]);
});
afterEach(async () => {
  // Whatever a test did, the next one starts with both stores up.
  await redis.unpause().catch(() => {});
  await Promise.all([postgres.start(), redis.start()]);
  await Promise.all([postgres.waitUntilReady(), redis.waitUntilReady()]);
  await Promise.all(instances.splice(0).map((created) => created.close()));
});
afterAll(async () => {
  await Promise.all([postgres?.remove(), redis?.remove()]);
});

describe("visit counter through outages", () => {
  it("3. Redis down: counts in PostgreSQL, then reconciles Redis before using it again", async () => {
    const id = uniqueId("redis-down");
    const created = await instance(id);
    for (let expected = 1; expected <= 5; expected++) {
      expect((await visit(created)).body).toEqual({ count: expected });
    }

    await redis.stop();
    for (let expected = 6; expected <= 10; expected++) {
      const res = await visit(created);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ count: expected });
      expect(res.headers["x-counter-source"]).toBe("postgres");
    }
    expect(await created.postgresCount()).toBe(10);

    // Redis returns with its old value (5): the next numbers must continue from 10.
    await redis.start();
    await eventually(async () => created.redis.isReady, true);
    const res = await visit(created);
    expect(res.body).toEqual({ count: 11 });
    expect(res.headers["x-counter-source"]).toBe("redis");
    expect(await created.redisCount(id)).toBe(11);
  });

  it("3. Redis down, 200 concurrent visits on two replicas, half with keys, some retried: exact", async () => {
    const id = uniqueId("redis-down-concurrent");
    const replicas = [await instance(id), await instance(id)];
    const urls = await Promise.all(replicas.map((replica) => replica.listen()));
    for (let expected = 1; expected <= 3; expected++) {
      expect((await visit(replicas[0] as CounterInstance)).body).toEqual({ count: expected });
    }
    await redis.stop();
    const batches = replicas.map((replica) => vi.spyOn(replica.postgres, "countBatch"));

    // 200 visits, every other one with its own key; the first 20 keys also sent a
    // second time at once, as a client's retry would, on the other replica.
    const keys = Array.from({ length: 200 }, (_, i) => (i % 2 ? `visit-${i}` : undefined));
    const retried = keys.filter((key) => key !== undefined).slice(0, 20);
    const attempts = [...keys, ...retried];
    const answers = await Promise.all(
      attempts.map(async (key, i) => {
        const res = await fetch(`${urls[i % 2]}/visits`, {
          method: "POST",
          headers: key ? { "Idempotency-Key": key } : {},
        });
        expect(res.status).toBe(200);
        expect(res.headers.get("x-counter-source")).toBe("postgres");
        return { key, count: ((await res.json()) as { count: number }).count };
      }),
    );

    // Every number from 4 to 203 exactly once; both attempts of a key got the same one.
    const numbers = new Set(answers.map((answer) => answer.count));
    expect([...numbers].sort((a, b) => a - b)).toEqual(
      Array.from({ length: 200 }, (_, i) => 4 + i),
    );
    for (const key of retried) {
      expect(new Set(answers.filter((a) => a.key === key).map((a) => a.count)).size).toBe(1);
    }
    expect(await replicas[0]?.postgresCount()).toBe(203);
    // How many visits share a transaction depends on timing (the unit tests pin the rule).
    const batchCount = batches.reduce((sum, spy) => sum + spy.mock.calls.length, 0);
    console.info(`redis down: ${attempts.length} concurrent attempts in ${batchCount} batches`);
  });

  it("3. Redis down: a retry with the same Idempotency-Key gets the first number, counted once", async () => {
    const id = uniqueId("idempotent-postgres");
    const [first, second] = [await instance(id), await instance(id)];
    await visit(first);
    await redis.stop();
    await expectRetriesCountedOnce(first, second, "postgres");
    expect(await first.postgresCount()).toBe(4);

    // Redis is back: retries of those visits still get their numbers, first from
    // PostgreSQL under the row lock (recovery window), later from the keys copied
    // into Redis when the window ended.
    await redis.start();
    await eventually(async () => first.redis.isReady && second.redis.isReady, true);
    const soon = await request(first.app).post("/visits").set("Idempotency-Key", "visit-abc");
    expect(soon.body).toEqual({ count: 2 });
    expect(soon.headers["idempotent-replayed"]).toBe("true");
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // the window is 1 s here
    const late = await request(second.app).post("/visits").set("Idempotency-Key", "visit-def");
    expect(late.body).toEqual({ count: 3 });
    expect(late.headers["idempotent-replayed"]).toBe("true");
    expect(late.headers["x-counter-source"]).toBe("redis");
    expect((await visit(first)).body).toEqual({ count: 5 });
  });

  it("3. Redis unreachable (paused, no answer): PostgreSQL path within 1 s, no number repeated", async () => {
    const id = uniqueId("redis-unreachable");
    const created = await instance(id);
    for (let expected = 1; expected <= 3; expected++) {
      expect((await visit(created)).body).toEqual({ count: expected });
    }

    await redis.pause();
    try {
      // The first request waits for the command timeout, the rest go straight to PostgreSQL.
      for (let expected = 4; expected <= 8; expected++) {
        const res = await visit(created);
        expect(res.body).toEqual({ count: expected });
        expect(res.headers["x-counter-source"]).toBe("postgres");
      }
    } finally {
      await redis.unpause();
    }
    await eventually(async () => created.redis.isReady, true);
    const res = await visit(created);
    expect(res.body).toEqual({ count: 9 });
    expect(res.headers["x-counter-source"]).toBe("redis");
  });

  it("4. PostgreSQL down: counts in Redis, PostgreSQL catches up when it returns", async () => {
    const created = await instance(uniqueId("postgres-down"));
    for (let i = 0; i < 3; i++) await visit(created);
    await eventually(() => created.postgresCount(), 3);

    await postgres.stop();
    for (let expected = 4; expected <= 12; expected++) {
      const res = await visit(created);
      expect(res.body).toEqual({ count: expected });
      expect(res.headers["x-counter-source"]).toBe("redis");
    }

    await postgres.start();
    const catchUpMs = await eventually(() => created.postgresCount(), 12, 20_000);
    console.info(`PostgreSQL caught up ${catchUpMs} ms after it was started again`);
  });

  it("5. both down: 503 with a JSON error, quickly; resumes by itself", async () => {
    const created = await instance(uniqueId("both-down"));
    await visit(created);
    await Promise.all([redis.stop(), postgres.stop()]);

    const res = await visit(created);
    expect(res.status).toBe(503);
    expect(res.body).toEqual({ error: expect.stringMatching(/unavailable/) });
    const ready = await request(created.app).get("/readyz");
    expect(ready.status).toBe(503);

    await postgres.start();
    await eventually(async () => (await request(created.app).post("/visits")).status, 200, 20_000);
    const after = await visit(created);
    expect(after.status).toBe(200);
    expect(after.body.count).toBeGreaterThan(1);
  });

  it("7. clients recover from restarts and /readyz reports each store", async () => {
    const created = await instance(uniqueId("readyz"));
    const both = await request(created.app).get("/readyz");
    expect(both.status).toBe(200);
    expect(both.body.checks).toMatchObject({ redis: { ok: true }, postgres: { ok: true } });

    await redis.kill();
    const onlyPostgres = await request(created.app).get("/readyz");
    expect(onlyPostgres.status).toBe(200);
    expect(onlyPostgres.body.checks).toMatchObject({
      redis: { ok: false },
      postgres: { ok: true },
    });

    await redis.start();
    await postgres.stop();
    await eventually(
      async () => (await request(created.app).get("/readyz")).body.checks.redis.ok,
      true,
    );
    const onlyRedis = await request(created.app).get("/readyz");
    expect(onlyRedis.status).toBe(200);
    expect(onlyRedis.body.checks.postgres.ok).toBe(false);

    await postgres.start();
    await eventually(
      async () => (await request(created.app).get("/readyz")).body.checks.postgres.ok,
      true,
      20_000,
    );
    expect((await visit(created)).status).toBe(200);
  });

  it("a stream of visits through Redis and PostgreSQL restarts: no failure, strictly increasing, exact", async () => {
    const created = await instance(uniqueId("stream"));
    const counts: number[] = [];
    let failures = 0;
    let streaming = true;
    const stream = (async () => {
      while (streaming) {
        const res = await request(created.app).post("/visits");
        if (res.status === 200) counts.push(res.body.count);
        else failures += 1;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();

    const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    await pause(500);
    await redis.stop();
    await pause(1_000);
    await redis.start();
    await pause(1_500);
    await postgres.stop();
    await pause(1_000);
    await postgres.start();
    await pause(1_500);
    streaming = false;
    await stream;

    console.info(`stream: ${counts.length} visits, ${failures} failed`);
    expect(failures).toBe(0);
    expect(counts.length).toBeGreaterThan(50);
    for (let i = 1; i < counts.length; i++) expect(counts[i]).toBe((counts[i - 1] ?? 0) + 1);
    await eventually(() => created.postgresCount(), counts.length, 20_000);
  });
});
