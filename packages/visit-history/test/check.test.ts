import { describe, expect, it } from "vitest";
import { type CheckResult, checkHistory, summarize } from "../src/check.ts";
import type { Attempt, History, ReadRecord, VisitRecord } from "../src/history.ts";

// Hand-made histories. Times are milliseconds on one clock; every history starts with
// PostgreSQL's count at 100, so the first number a visit can get is 101.

const TARGET = "http://replica-1:3000";
const initialCount = 100;

/** A 200 carrying the visit's number. */
function answered(count: number, start: number, end: number, replayed = false): Attempt {
  return { target: TARGET, start, end, status: 200, count, ...(replayed ? { replayed } : {}) };
}

/** No answer at all (reset, refused): the counter may or may not have counted it. */
function lost(start: number, end: number): Attempt {
  return { target: TARGET, start, end, status: 0, error: "ECONNRESET" };
}

/** A 503: an answer, but no number. */
function unavailable(start: number, end: number): Attempt {
  return { target: TARGET, start, end, status: 503 };
}

/** A GET that showed `count`. */
function read(count: number, start: number, extra: Partial<ReadRecord> = {}): ReadRecord {
  return { target: TARGET, start, end: start + 2, status: 200, count, ...extra };
}

type VisitSpec = Omit<VisitRecord, "id">;

/** A history whose visits get their index as id. */
function historyOf(visits: VisitSpec[], reads: ReadRecord[] = []): History {
  return { visits: visits.map((visit, id) => ({ id, ...visit })), reads };
}

/** The violations of one kind, e.g. "(b)". */
const violationsOf = (result: CheckResult, tag: string) =>
  result.violations.filter((line) => line.startsWith(`${tag} `));

describe("checkHistory on a correct history", () => {
  // v0: an unkeyed visit, acknowledged with 101.
  // v1: a keyed visit counted as 102 by its first attempt, whose answer was lost; its retry
  //     replays 102. Visit v2 was acknowledged (at 30) while v1 was still under way.
  // v2: a keyed visit acknowledged with 103, sent again (echo): replays 103.
  // v3: an unkeyed visit without an answer, which the counter did count (104): a phantom.
  // v4: a keyed visit tried twice without a number, never counted.
  const history = historyOf(
    [
      { attempts: [answered(101, 0, 10)] },
      { key: "k1", attempts: [lost(5, 15), answered(102, 70, 75, true)] },
      { key: "k2", attempts: [answered(103, 20, 30)], echo: answered(103, 40, 45, true) },
      { attempts: [lost(30, 40)] },
      { key: "k4", attempts: [lost(50, 55), unavailable(105, 106)] },
    ],
    [
      read(100, 0, { cache: "hit" }), // before anything was acknowledged
      read(103, 50, { cache: "miss" }), // after 101 and 103 were acknowledged
      read(101, 60, { cache: "hit" }), // behind, but 103 was acknowledged less than the TTL before
      { target: TARGET, start: 210, end: 215, status: 503 }, // no answer to check
    ],
  );
  const result = checkHistory(history, { initialCount, finalCount: 104, cacheTtlMs: 40 });

  it("is ok, without violations", () => {
    expect(result.violations).toEqual([]);
    expect(result.ok).toBe(true);
  });

  it("counts the visits, attempts, acknowledged visits, phantoms and unanswered attempts", () => {
    expect(result).toMatchObject({
      visits: 5,
      attempts: 7,
      acknowledged: 3,
      phantoms: 1,
      unanswered: 2, // v3's attempt, and v4 once for both of its attempts
    });
  });

  it("counts the replays, the reads it checked, and where they came from", () => {
    expect(result).toMatchObject({
      replaysChecked: 1,
      reads: 4,
      readsChecked: 3,
      cacheHits: 2,
      cacheMisses: 1,
    });
  });

  it("summarizes the result in one line", () => {
    expect(summarize(result)).toBe(
      "5 visits (7 attempts), 3 acknowledged, 1 phantoms (≤ 2 unanswered), 1 replays checked, " +
        "4 reads (3 checked: 2 cache hits, 1 misses), OK",
    );
  });
});

describe("(a) every acknowledged visit has its own number", () => {
  it("reports a number acknowledged to two visits", () => {
    const history = historyOf([
      { attempts: [answered(101, 0, 10)] },
      { attempts: [answered(101, 20, 30)] },
    ]);
    const result = checkHistory(history, { initialCount, finalCount: 102 });
    expect(result.ok).toBe(false);
    expect(result.violations).toEqual(["(a) number 101 acknowledged to visits 0, 1"]);
  });

  it("reports at most 20 violations of one kind", () => {
    // 25 numbers, each acknowledged to two overlapping visits.
    const visits = Array.from({ length: 50 }, (_, i) => ({
      attempts: [answered(101 + Math.floor(i / 2), 0, 100)],
    }));
    const result = checkHistory(historyOf(visits), { initialCount, finalCount: 150 });
    expect(violationsOf(result, "(a)")).toHaveLength(20);
    expect(result.violations).toHaveLength(20);
  });
});

describe("(b) the count grew by the acknowledged visits plus phantoms", () => {
  it("reports fewer counted than acknowledged", () => {
    const history = historyOf([
      { attempts: [answered(101, 0, 10)] },
      { attempts: [answered(102, 20, 30)] },
      { attempts: [answered(103, 40, 50)] },
    ]);
    const result = checkHistory(history, { initialCount, finalCount: 102 });
    expect(result.ok).toBe(false);
    expect(result.phantoms).toBe(-1);
    expect(violationsOf(result, "(b)")).toContain("(b) 3 acknowledged but PostgreSQL grew by 2");
  });

  it("accepts as many phantoms as attempts that got no number", () => {
    const history = historyOf([
      { attempts: [answered(101, 0, 10)] },
      { attempts: [lost(20, 30)] },
      { key: "k", attempts: [unavailable(40, 50)] },
    ]);
    const result = checkHistory(history, { initialCount, finalCount: 103 });
    expect(result.violations).toEqual([]);
    expect(result).toMatchObject({ acknowledged: 1, phantoms: 2, unanswered: 2 });
  });

  it("reports more phantoms than attempts that got no number", () => {
    const history = historyOf([{ attempts: [answered(101, 0, 10)] }, { attempts: [lost(20, 30)] }]);
    const result = checkHistory(history, { initialCount, finalCount: 103 });
    expect(result.violations).toEqual(["(b) 2 phantoms but only 1 attempts went unanswered"]);
  });

  it("counts a keyed visit without a number once, however often it was tried", () => {
    const history = historyOf([
      { key: "k", attempts: [lost(0, 10), lost(60, 70), unavailable(170, 180)] },
    ]);
    expect(checkHistory(history, { initialCount, finalCount: 101 }).violations).toEqual([]);

    const result = checkHistory(history, { initialCount, finalCount: 102 });
    expect(result.unanswered).toBe(1);
    expect(result.violations).toEqual(["(b) 2 phantoms but only 1 attempts went unanswered"]);
  });

  it("counts each attempt of an unkeyed visit without a number", () => {
    const history = historyOf([{ attempts: [lost(0, 10), lost(60, 70)] }]);
    const result = checkHistory(history, { initialCount, finalCount: 102 });
    expect(result.violations).toEqual([]);
    expect(result).toMatchObject({ phantoms: 2, unanswered: 2 });
  });

  it("allows no phantom for a keyed visit that was never sent", () => {
    const history = historyOf([{ key: "k", attempts: [] }]);
    const result = checkHistory(history, { initialCount, finalCount: 101 });
    expect(result.unanswered).toBe(0);
    expect(result.violations).toEqual(["(b) 1 phantoms but only 0 attempts went unanswered"]);
  });

  it("does not count the failed attempts of an acknowledged keyed visit as unanswered", () => {
    const history = historyOf([{ key: "k", attempts: [lost(0, 10), answered(101, 60, 70, true)] }]);
    const result = checkHistory(history, { initialCount, finalCount: 102 });
    expect(result.unanswered).toBe(0);
    expect(result.violations).toEqual(["(b) 1 phantoms but only 0 attempts went unanswered"]);
  });

  it("reports a number above the final count", () => {
    const history = historyOf([{ attempts: [answered(102, 0, 10)] }]);
    const result = checkHistory(history, { initialCount, finalCount: 101 });
    expect(result.violations).toEqual(["(b) visit 0 got 102, outside (100, 101]"]);
  });

  it("reports a number at or below the initial count", () => {
    const history = historyOf([{ attempts: [answered(100, 0, 10)] }]);
    const result = checkHistory(history, { initialCount, finalCount: 101 });
    expect(result.violations).toEqual(["(b) visit 0 got 100, outside (100, 101]"]);
  });
});

describe("(b) with the database's keys", () => {
  // v0 acknowledged 101 but its transaction rolled back; v1's commit took 101 and its
  // answer was lost: numbers unique, counts add up, yet v0's acknowledgement is false.
  const history = historyOf([
    { key: "k0", attempts: [answered(101, 0, 10)] },
    { key: "k1", attempts: [lost(5, 15)] },
  ]);

  it("reports a keyed visit whose number is not the one the database holds for its key", () => {
    const result = checkHistory(history, {
      initialCount,
      finalCount: 101,
      durableKeys: new Map([["k1", 101]]),
    });
    expect(violationsOf(result, "(b)")).toEqual([
      "(b) visit 0 was acknowledged with 101, but the database holds nothing for its key",
    ]);
  });

  it("accepts keyed visits whose numbers the database holds", () => {
    const result = checkHistory(history, {
      initialCount,
      finalCount: 101,
      durableKeys: new Map([["k0", 101]]),
    });
    expect(result.violations).toEqual([]);
  });
});

describe("(c) a keyed visit sent again replays its number", () => {
  it("accepts an echo that replays the number, marked replayed", () => {
    const history = historyOf([
      { key: "k", attempts: [answered(101, 0, 10)], echo: answered(101, 20, 30, true) },
    ]);
    const result = checkHistory(history, { initialCount, finalCount: 101 });
    expect(result.violations).toEqual([]);
    expect(result.replaysChecked).toBe(1);
  });

  it("reports an echo that got another number", () => {
    const history = historyOf([
      { key: "k", attempts: [answered(101, 0, 10)], echo: answered(102, 20, 30, true) },
    ]);
    const result = checkHistory(history, { initialCount, finalCount: 101 });
    expect(result.replaysChecked).toBe(1);
    expect(result.violations).toEqual(["(c) visit 0 (key k) got 101, then 102 when sent again"]);
  });

  it("reports an echo with the same number but not marked replayed", () => {
    const history = historyOf([
      { key: "k", attempts: [answered(101, 0, 10)], echo: answered(101, 20, 30) },
    ]);
    const result = checkHistory(history, { initialCount, finalCount: 101 });
    expect(result.violations).toEqual([
      "(c) visit 0 (key k) got 101, then 101 when sent again, not marked replayed",
    ]);
  });

  it("reports a first attempt answered as a replay", () => {
    const history = historyOf([{ key: "k", attempts: [answered(101, 0, 10, true)] }]);
    const result = checkHistory(history, { initialCount, finalCount: 101 });
    expect(result.violations).toEqual([
      "(c) visit 0's first attempt was answered as a replay (101)",
    ]);
  });

  it("accepts a first attempt answered as a replay when a proxy retries visits itself", () => {
    const history = historyOf([{ key: "k1", attempts: [answered(101, 0, 10, true)] }]);
    const strict = checkHistory(history, { initialCount, finalCount: 101 });
    expect(violationsOf(strict, "(c)")).toHaveLength(1);
    const proxied = checkHistory(history, { initialCount, finalCount: 101, proxyRetries: true });
    expect(proxied.violations).toEqual([]);
  });

  it("does not check an echo that got no answer", () => {
    const history = historyOf([{ key: "k", attempts: [answered(101, 0, 10)], echo: lost(20, 30) }]);
    const result = checkHistory(history, { initialCount, finalCount: 101 });
    expect(result.violations).toEqual([]);
    expect(result.replaysChecked).toBe(0);
  });
});

describe("(d) a visit acknowledged before another started has the smaller number", () => {
  it("reports a visit that started after a larger number was acknowledged", () => {
    const history = historyOf([
      { attempts: [answered(102, 0, 10)] },
      { attempts: [answered(101, 20, 30)] },
    ]);
    const result = checkHistory(history, { initialCount, finalCount: 102 });
    expect(result.violations).toEqual([
      "(d) visit 1 started after visit 0 was acknowledged with 102, but got 101",
    ]);
  });

  it("compares with the largest number acknowledged so far", () => {
    const history = historyOf([
      { attempts: [answered(103, 0, 10)] },
      { attempts: [answered(101, 0, 15)] },
      { attempts: [answered(102, 20, 30)] },
    ]);
    const result = checkHistory(history, { initialCount, finalCount: 103 });
    expect(result.violations).toEqual([
      "(d) visit 2 started after visit 0 was acknowledged with 103, but got 102",
    ]);
  });

  it("accepts overlapping visits numbered in either order", () => {
    const history = historyOf([
      { attempts: [answered(102, 0, 30)] },
      { attempts: [answered(101, 10, 20)] },
    ]);
    expect(checkHistory(history, { initialCount, finalCount: 102 }).violations).toEqual([]);
  });

  it("does not count a start at the very instant of an acknowledgement as after it", () => {
    const history = historyOf([
      { attempts: [answered(102, 0, 10)] },
      { attempts: [answered(101, 10, 20)] },
    ]);
    expect(checkHistory(history, { initialCount, finalCount: 102 }).violations).toEqual([]);
  });

  it("accepts a keyed visit whose number came from an earlier attempt that overlapped", () => {
    // v0's first attempt was counted as 101 but its answer lost; v1 got 102 meanwhile, and
    // only then did v0's retry start, getting 101 replayed.
    const history = historyOf([
      { key: "k", attempts: [lost(0, 5), answered(101, 60, 70, true)] },
      { attempts: [answered(102, 10, 20)] },
    ]);
    const result = checkHistory(history, { initialCount, finalCount: 102 });
    expect(result.violations).toEqual([]);
    expect(result.acknowledged).toBe(2);
  });
});

describe("(e) reads show every number acknowledged a cache lifetime before they started", () => {
  // v0 acknowledged 101 at 10, v1 acknowledged 102 at 20; v2 sent at 30, never answered.
  const visits: VisitSpec[] = [
    { attempts: [answered(101, 0, 10)] },
    { attempts: [answered(102, 5, 20)] },
    { attempts: [lost(30, 40)] },
  ];
  const check = (reads: ReadRecord[], cacheTtlMs = 0) =>
    checkHistory(historyOf(visits, reads), { initialCount, finalCount: 103, cacheTtlMs });

  it("reports a read below the floor of numbers acknowledged before it started", () => {
    const result = check([read(101, 25, { cache: "hit" })]);
    expect(result.readsChecked).toBe(1);
    expect(result.violations).toEqual([
      `(e) a read at 25 ms from ${TARGET} (hit) showed 101, but 102 had been acknowledged`,
    ]);
  });

  it("accepts a read that started before an acknowledgement without its number", () => {
    const result = check([read(100, 10), read(101, 15), read(102, 25)]);
    expect(result.violations).toEqual([]);
    expect(result.readsChecked).toBe(3);
  });

  it("lets a read lag by the cache lifetime, and no more", () => {
    // 102 was acknowledged at 20: with a lifetime of 30 ms, reads from 50 on must show it.
    const result = check([read(101, 49), read(101, 50), read(101, 51)], 30);
    expect(result.violations).toEqual([
      `(e) a read at 51 ms from ${TARGET} (?) showed 101, but 102 had been acknowledged`,
    ]);
  });

  it("reports a read above what could have been counted by its end", () => {
    // By 20 only v0 and v1 had been sent: 102 at most. v2 (sent at 30) may make it 103.
    const result = check([read(103, 15), read(103, 35)]);
    expect(result.violations).toEqual([
      `(e) a read at 15 ms from ${TARGET} (?) showed 103, more than the 102 that could be counted`,
    ]);
  });

  it("counts a keyed visit once for the ceiling, however often it was sent", () => {
    const keyed: VisitSpec[] = [
      { key: "k", attempts: [lost(0, 5), lost(6, 8), answered(101, 10, 12, true)] },
    ];
    const result = checkHistory(historyOf(keyed, [read(102, 20)]), {
      initialCount,
      finalCount: 102,
    });
    expect(violationsOf(result, "(e)")).toEqual([
      `(e) a read at 20 ms from ${TARGET} (?) showed 102, more than the 101 that could be counted`,
    ]);
  });

  it("reports a read above the final count", () => {
    const result = checkHistory(historyOf(visits, [read(103, 50)]), {
      initialCount,
      finalCount: 102,
    });
    expect(violationsOf(result, "(e)")).toEqual([
      `(e) a read at 50 ms from ${TARGET} (?) showed 103, more than the 102 that could be counted`,
    ]);
  });

  it("records reads without an answer but does not check them", () => {
    const result = check([{ target: TARGET, start: 25, end: 30, status: 0, error: "timeout" }]);
    expect(result.violations).toEqual([]);
    expect(result).toMatchObject({ reads: 1, readsChecked: 0 });
  });
});
