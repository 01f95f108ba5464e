import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { coalesce } from "../src/coalesce.ts";

describe("coalesced reads", () => {
  it("never answers a caller with a query that started before it called", async () => {
    let value = 0;
    const started: number[] = [];
    const read = coalesce(async () => {
      started.push(value);
      const seen = value;
      await sleep(20);
      return seen;
    });
    const first = read(); // query 1 reads 0
    value = 1; // a visit is acknowledged while query 1 runs
    const later = [read(), read(), read()]; // these arrive after it: they need query 2
    expect(await first).toBe(0);
    expect(await Promise.all(later)).toEqual([1, 1, 1]);
    // Three callers during query 1 shared one query after it.
    expect(started).toEqual([0, 1]);
  });

  it("starts a fresh query after a failed one", async () => {
    let calls = 0;
    const read = coalesce(async () => {
      calls++;
      await sleep(5);
      if (calls === 1) throw new Error("down");
      return calls;
    });
    const failed = read();
    const next = read();
    await expect(failed).rejects.toThrow("down");
    expect(await next).toBe(2);
  });
});
