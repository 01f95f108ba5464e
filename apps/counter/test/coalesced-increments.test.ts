import { describe, expect, it } from "vitest";
import { CoalescedIncrements } from "../src/coalesced-increments.ts";

/** A fake row: each call adds n after a tick, like a statement in flight. */
function fakeRow() {
  let count = 100;
  const calls: number[] = [];
  const incrementBy = async (n: number) => {
    calls.push(n);
    await new Promise((resolve) => setTimeout(resolve, 5));
    count += n;
    return count;
  };
  return { incrementBy, calls };
}

describe("coalesced PostgreSQL increments", () => {
  it("serves callers that arrive during a statement with one statement, each its own number", async () => {
    const row = fakeRow();
    const increments = new CoalescedIncrements(row.incrementBy);
    const counts = await Promise.all(Array.from({ length: 50 }, () => increments.next()));
    // The first caller runs alone; the 49 that arrived meanwhile share the next statement.
    expect(row.calls).toEqual([1, 49]);
    expect(counts).toEqual(Array.from({ length: 50 }, (_, i) => 101 + i));
  });

  it("runs one statement per caller when they come one at a time", async () => {
    const row = fakeRow();
    const increments = new CoalescedIncrements(row.incrementBy);
    expect(await increments.next()).toBe(101);
    expect(await increments.next()).toBe(102);
    expect(row.calls).toEqual([1, 1]);
  });

  it("fails every caller of a failed statement, and serves the next ones again", async () => {
    let fail = true;
    const row = fakeRow();
    const increments = new CoalescedIncrements(async (n) => {
      if (fail) {
        fail = false;
        await new Promise((resolve) => setTimeout(resolve, 5));
        throw new Error("connection lost");
      }
      return row.incrementBy(n);
    });
    const first = increments.next();
    const queued = [increments.next(), increments.next()];
    await expect(first).rejects.toThrow("connection lost");
    // Queued behind the failed statement: counted by the next one.
    expect(await Promise.all(queued)).toEqual([101, 102]);
    expect(await increments.next()).toBe(103);
  });
});
