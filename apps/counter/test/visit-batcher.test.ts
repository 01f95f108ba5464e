import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";

import type { Increment } from "../src/postgres-store.ts";
import { type CountBatch, VisitBatcher } from "../src/visit-batcher.ts";

/** A fake row: each batch adds one per visit after `ms`, like a transaction in flight. */
function fakeRow(ms = 5) {
  let count = 100;
  const batches: Array<{ keys: ReadonlyArray<string | undefined>; timeoutMs: number; at: number }> =
    [];
  const countBatch: CountBatch<Increment> = async (keys, timeoutMs) => {
    batches.push({ keys, timeoutMs, at: Date.now() });
    await sleep(ms);
    return keys.map((): Increment => ({ count: ++count, replayed: false }));
  };
  return { countBatch, batches };
}

describe("visit batcher (group commit)", () => {
  it("counts the visits that arrive during a batch in the next one, each with its own number", async () => {
    const row = fakeRow();
    const batcher = new VisitBatcher(row.countBatch, 1_000);
    const counted = await Promise.all(Array.from({ length: 50 }, () => batcher.count()));
    // The first visit runs alone; the 49 that arrived meanwhile share the next batch.
    expect(row.batches.map((batch) => batch.keys.length)).toEqual([1, 49]);
    expect(counted.map((visit) => visit.count)).toEqual(
      Array.from({ length: 50 }, (_, i) => 101 + i),
    );
  });

  it("passes the keys on, in order", async () => {
    const row = fakeRow();
    const batcher = new VisitBatcher(row.countBatch, 1_000);
    expect(await batcher.count("key-1")).toEqual({ count: 101, replayed: false });
    expect(await batcher.count()).toEqual({ count: 102, replayed: false });
    expect(row.batches.map((batch) => batch.keys)).toEqual([["key-1"], [undefined]]);
  });

  it("gives a batch the time its youngest visit has left", async () => {
    const row = fakeRow(100);
    const batcher = new VisitBatcher(row.countBatch, 1_000);
    const first = batcher.count();
    await sleep(40);
    const arrived = Date.now();
    const second = batcher.count(); // waits in the queue for the first batch
    await Promise.all([first, second]);
    const batch = row.batches[1];
    if (!batch) throw new Error("no second batch");
    // Its deadline is its arrival + 1 s, whatever it spent in the queue (±1 ms of clock tick).
    expect(Math.abs(batch.at + batch.timeoutMs - (arrived + 1_000))).toBeLessThanOrEqual(1);
  });

  it("answers an old visit at its deadline while its batch goes on for the younger ones", async () => {
    // Every commit takes 150 ms and respects the time it is given, like the real one.
    let count = 0;
    const batcher = new VisitBatcher<Increment>(async (keys, timeoutMs) => {
      await sleep(Math.min(150, timeoutMs));
      if (timeoutMs < 150) throw new Error("postgres: no answer");
      return keys.map(() => ({ count: ++count, replayed: false }));
    }, 200);
    const first = batcher.count(); // a batch of its own, until 150 ms
    await sleep(10);
    const old = batcher.count(); // queued, deadline at 210 ms
    await sleep(130);
    const young = batcher.count(); // queued, deadline at 340 ms
    // Their batch starts at 150 ms and may take until 340 ms: it commits at 300 ms.
    await expect(first).resolves.toEqual({ count: 1, replayed: false });
    await expect(old).rejects.toThrow(/not counted within/);
    // The old visit was counted all the same (an answer lost, as far as its client knows).
    await expect(young).resolves.toEqual({ count: 3, replayed: false });
  });

  it("fails every visit of a failed batch, and serves the queued ones with the next", async () => {
    let fail = true;
    const row = fakeRow();
    const batcher = new VisitBatcher(async (keys, timeoutMs) => {
      if (fail) {
        fail = false;
        await sleep(5);
        throw new Error("connection lost");
      }
      return row.countBatch(keys, timeoutMs);
    }, 1_000);
    const first = batcher.count();
    const queued = [batcher.count(), batcher.count()];
    await expect(first).rejects.toThrow("connection lost");
    expect((await Promise.all(queued)).map((visit) => visit.count)).toEqual([101, 102]);
  });

  it("answers a visit still queued at its deadline, without ever sending it", async () => {
    const row = fakeRow(300); // a batch that takes longer than a visit may wait
    const batcher = new VisitBatcher(row.countBatch, 200);
    const inFlight = batcher.count();
    await sleep(10);
    const queued = batcher.count();
    // Both are answered at their own deadlines, 200 ms after they arrived, while the
    // batch is still running: the first with its outcome unknown, the second never sent.
    await expect(inFlight).rejects.toThrow(/not counted within/);
    await expect(queued).rejects.toThrow(/not counted within/);
    await sleep(150);
    expect(row.batches.map((batch) => batch.keys.length)).toEqual([1]);
  });
});
