import { describe, expect, it } from "vitest";
import { CoalescedIncrements, type CountBatch } from "../src/coalesced-increments.ts";

/** A fake row: each batch adds one per visit after a tick, like a statement in flight. */
function fakeRow() {
  let count = 100;
  const batches: Array<ReadonlyArray<string | undefined>> = [];
  const countBatch: CountBatch = async (keys) => {
    batches.push(keys);
    await new Promise((resolve) => setTimeout(resolve, 5));
    return keys.map(() => ({ count: ++count, replayed: false }));
  };
  return { countBatch, batches };
}

describe("coalesced PostgreSQL increments", () => {
  it("serves visits that arrive during a batch with one batch, each its own number", async () => {
    const row = fakeRow();
    const increments = new CoalescedIncrements(row.countBatch);
    const counts = await Promise.all(Array.from({ length: 50 }, () => increments.next()));
    // The first visit runs alone; the 49 that arrived meanwhile share the next batch.
    expect(row.batches.map((keys) => keys.length)).toEqual([1, 49]);
    expect(counts.map((visit) => visit.count)).toEqual(
      Array.from({ length: 50 }, (_, i) => 101 + i),
    );
  });

  it("runs one batch per visit when they come one at a time, and passes the keys on", async () => {
    const row = fakeRow();
    const increments = new CoalescedIncrements(row.countBatch);
    expect(await increments.next("key-1")).toEqual({ count: 101, replayed: false });
    expect(await increments.next()).toEqual({ count: 102, replayed: false });
    expect(row.batches).toEqual([["key-1"], [undefined]]);
  });

  it("fails every visit of a failed batch, and serves the next ones again", async () => {
    let fail = true;
    const row = fakeRow();
    const increments = new CoalescedIncrements(async (keys) => {
      if (fail) {
        fail = false;
        await new Promise((resolve) => setTimeout(resolve, 5));
        throw new Error("connection lost");
      }
      return row.countBatch(keys);
    });
    const first = increments.next();
    const queued = [increments.next(), increments.next()];
    await expect(first).rejects.toThrow("connection lost");
    // Queued behind the failed batch: counted by the next one.
    expect((await Promise.all(queued)).map((visit) => visit.count)).toEqual([101, 102]);
  });

  it("fails only the visit the batch could not answer", async () => {
    const increments = new CoalescedIncrements(async (keys) =>
      keys.map((key, i) => (key === "gone" ? undefined : { count: 7 + i, replayed: false })),
    );
    const [kept, gone] = await Promise.allSettled([increments.next("a"), increments.next("gone")]);
    expect(kept).toEqual({ status: "fulfilled", value: { count: 7, replayed: false } });
    expect(gone).toMatchObject({ status: "rejected" });
  });
});
