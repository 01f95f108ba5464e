import request from "supertest";
import { expect } from "vitest";
import type { CounterInstance } from "./counter-instance.ts";

/**
 * The Idempotency-Key contract, on two replicas of one counter that stands at 1:
 * a visit counted on one replica whose answer never arrived (the replica died in
 * between) is answered with the same number when the client retries it on the other,
 * and ten concurrent attempts with one key are counted once. The count ends at 4.
 */
export async function expectRetriesCountedOnce(
  first: CounterInstance,
  second: CounterInstance,
): Promise<void> {
  const lost = await first.counter.increment("visit-abc");
  expect(lost).toEqual({ count: 2, replayed: false });
  const retry = await request(second.app).post("/visits").set("Idempotency-Key", "visit-abc");
  expect(retry.body).toEqual({ count: 2 });
  expect(retry.headers["idempotent-replayed"]).toBe("true");

  const attempts = await Promise.all(
    Array.from({ length: 10 }, (_, i) =>
      request((i % 2 ? first : second).app)
        .post("/visits")
        .set("Idempotency-Key", "visit-def"),
    ),
  );
  expect(new Set(attempts.map((res) => res.body.count))).toEqual(new Set([3]));
  expect(attempts.filter((res) => res.headers["idempotent-replayed"])).toHaveLength(9);
  expect((await request(first.app).post("/visits")).body).toEqual({ count: 4 });
}
