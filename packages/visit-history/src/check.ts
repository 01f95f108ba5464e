import { acknowledgement, type History, type VisitRecord, type Window } from "./history.ts";

export interface CheckOptions {
  /** PostgreSQL's count before the first visit of the history. */
  initialCount: number;
  /** PostgreSQL's count after the last visit had its answer. */
  finalCount: number;
  /**
   * Reads that start inside these windows are exempt from the read guarantee: a fault
   * that loses the cache's data (emptied, restarted, restored) and the cache lifetime
   * after it (see the counter's read guarantee).
   */
  readExemptions?: Window[];
  /**
   * How long after its answer a visit marked `X-Counter-Cache: missed` may be missing
   * from reads: the cache lifetime plus a margin. Default 0 (never).
   */
  cacheMissGraceMs?: number;
  /**
   * Reads marked stale are only expected while the database is unreachable: when given,
   * a stale read that starts outside these windows is a violation. Default: anywhere.
   */
  staleWindows?: Window[];
  /**
   * The numbers the database holds for Idempotency-Keys (key → number): every keyed
   * visit must have been acknowledged with its key's durable number.
   */
  durableKeys?: ReadonlyMap<string, number>;
  /**
   * The visits went through a proxy that sends a visit again by itself (Nginx, with its
   * own Idempotency-Key): then even a first attempt may be answered as a replay.
   */
  proxyRetries?: boolean;
}

export interface CheckResult {
  ok: boolean;
  /** One line per broken promise (at most 20 of each kind). */
  violations: string[];
  visits: number;
  attempts: number;
  acknowledged: number;
  /** Counted in PostgreSQL but never acknowledged: `final − initial − acknowledged`. */
  phantoms: number;
  /** The most phantoms the history allows: attempts that got no number. */
  unanswered: number;
  /** Acknowledged keyed visits sent again whose answer replayed their number. */
  replaysChecked: number;
  /** Acknowledged visits whose answer said the cache missed them. */
  cacheMissed: number;
  reads: number;
  readsChecked: number;
  readsExempt: number;
}

/**
 * How many times a visit without a number may have been counted: each attempt of an
 * unkeyed visit, a keyed visit once if it was sent at all.
 */
const countedAtMost = (visit: VisitRecord) =>
  visit.key === undefined ? visit.attempts.length : Math.min(visit.attempts.length, 1);

/**
 * Checks the counter's promises over a history of concurrent visits and reads:
 *
 * (a) every acknowledged visit has its own number;
 * (b) PostgreSQL's count grew by the acknowledged visits plus phantoms, and phantoms are
 *     no more than the attempts that got no number (a keyed visit counts once at most);
 *     every acknowledged number lies in (initial, final]; a keyed visit's number is the
 *     one the database holds for its key (when `durableKeys` is given);
 * (c) a keyed visit sent again after its acknowledgement gets the same number, marked
 *     replayed, and a replayed answer only ever follows an attempt of the same visit
 *     (unless a proxy retries visits itself: `proxyRetries`);
 * (d) real-time order: a visit acknowledged before another visit's first attempt
 *     started has the smaller number;
 * (e) reads: a read not marked stale and outside the exemptions shows at least every
 *     number acknowledged before it started (one whose answer said the cache missed it:
 *     `cacheMissGraceMs` after its answer), and never more than the final count; a
 *     stale read only happens inside `staleWindows` (when given).
 */
export function checkHistory(history: History, options: CheckOptions): CheckResult {
  const {
    initialCount,
    finalCount,
    readExemptions = [],
    cacheMissGraceMs = 0,
    staleWindows,
    durableKeys,
    proxyRetries = false,
  } = options;
  const violations: string[] = [];
  const report = (kind: string, message: string) => {
    if (violations.filter((line) => line.startsWith(kind)).length < 20)
      violations.push(`${kind} ${message}`);
  };

  const acked = history.visits.flatMap((visit) => {
    const ack = acknowledgement(visit);
    return ack?.count === undefined ? [] : [{ visit, ack, count: ack.count }];
  });

  // (a) unique numbers.
  const byNumber = new Map<number, number[]>();
  for (const { visit, count } of acked)
    byNumber.set(count, [...(byNumber.get(count) ?? []), visit.id]);
  for (const [count, ids] of byNumber) {
    if (ids.length > 1) report("(a)", `number ${count} acknowledged to visits ${ids.join(", ")}`);
  }

  // (b) the durable count: acknowledged + phantoms, phantoms bounded by unanswered attempts.
  const unanswered = history.visits
    .filter((visit) => acknowledgement(visit) === undefined)
    .reduce((sum, visit) => sum + countedAtMost(visit), 0);
  const phantoms = finalCount - initialCount - acked.length;
  if (phantoms < 0) {
    report(
      "(b)",
      `${acked.length} acknowledged but PostgreSQL grew by ${finalCount - initialCount}`,
    );
  }
  if (phantoms > unanswered) {
    report("(b)", `${phantoms} phantoms but only ${unanswered} attempts went unanswered`);
  }
  for (const { visit, count } of acked) {
    if (count <= initialCount || count > finalCount)
      report("(b)", `visit ${visit.id} got ${count}, outside (${initialCount}, ${finalCount}]`);
  }

  if (durableKeys) {
    for (const { visit, count } of acked) {
      if (visit.key === undefined) continue;
      const durable = durableKeys.get(visit.key);
      if (durable !== count)
        report(
          "(b)",
          `visit ${visit.id} was acknowledged with ${count}, but the database holds ${durable ?? "nothing"} for its key`,
        );
    }
  }

  // (c) replays.
  let replaysChecked = 0;
  for (const { visit, ack, count } of acked) {
    if (ack.replayed && visit.attempts.indexOf(ack) === 0 && !proxyRetries)
      report("(c)", `visit ${visit.id}'s first attempt was answered as a replay (${count})`);
    const echo = visit.echo;
    if (echo?.count === undefined) continue;
    replaysChecked++;
    if (echo.count !== count || !echo.replayed)
      report(
        "(c)",
        `visit ${visit.id} (key ${visit.key}) got ${count}, then ${echo.count} when sent again` +
          `${echo.replayed ? "" : ", not marked replayed"}`,
      );
  }

  // (d) real-time order: sweep the first starts and the acknowledgements in time order.
  const events = [
    ...acked.map(({ visit, ack, count }) => ({ at: ack.end, kind: 0, visit, count })),
    ...acked.map(({ visit, count }) => ({
      at: visit.attempts[0]?.start ?? 0,
      kind: 1,
      visit,
      count,
    })),
  ].sort((x, y) => x.at - y.at || y.kind - x.kind); // a start at the same instant goes first
  let highest: { count: number; id: number } | undefined;
  for (const event of events) {
    if (event.kind === 0) {
      if (highest === undefined || event.count > highest.count)
        highest = { count: event.count, id: event.visit.id };
    } else if (highest !== undefined && event.count < highest.count) {
      report(
        "(d)",
        `visit ${event.visit.id} started after visit ${highest.id} was acknowledged with ${highest.count}, but got ${event.count}`,
      );
    }
  }

  // (e) reads.
  // When each number becomes the least a read must show.
  const ackEnds = acked
    .map(({ ack, count }) => ({ at: ack.end + (ack.cacheMissed ? cacheMissGraceMs : 0), count }))
    .sort((x, y) => x.at - y.at);
  const reads = history.reads
    .filter((read) => read.count !== undefined)
    .sort((x, y) => x.start - y.start);
  let index = 0;
  let floor = initialCount;
  let readsChecked = 0;
  let readsExempt = 0;
  for (const read of reads) {
    while (index < ackEnds.length && (ackEnds[index]?.at ?? 0) < read.start) {
      floor = Math.max(floor, ackEnds[index]?.count ?? 0);
      index++;
    }
    const count = read.count as number;
    if (count > finalCount) report("(e)", `a read showed ${count}, above the final ${finalCount}`);
    const within = (windows: Window[]) =>
      windows.some((window) => read.start >= window.from && read.start <= window.to);
    if (read.stale && staleWindows && !within(staleWindows))
      report(
        "(e)",
        `a read at ${read.start.toFixed(0)} ms was marked stale outside a database fault`,
      );
    const exempt = read.stale === true || within(readExemptions);
    if (exempt) {
      readsExempt++;
      continue;
    }
    readsChecked++;
    if (count < floor)
      report(
        "(e)",
        `a read at ${read.start.toFixed(0)} ms from ${read.target} (${read.source ?? "?"}) showed ${count}, but ${floor} had been acknowledged`,
      );
  }

  return {
    ok: violations.length === 0,
    violations,
    visits: history.visits.length,
    attempts: history.visits.reduce((sum, visit) => sum + visit.attempts.length, 0),
    acknowledged: acked.length,
    phantoms,
    unanswered,
    replaysChecked,
    cacheMissed: acked.filter(({ ack }) => ack.cacheMissed).length,
    reads: history.reads.length,
    readsChecked,
    readsExempt,
  };
}

/** One line for a log or a report. */
export function summarize(result: CheckResult): string {
  return [
    `${result.visits} visits (${result.attempts} attempts)`,
    `${result.acknowledged} acknowledged`,
    `${result.phantoms} phantoms (≤ ${result.unanswered} unanswered)`,
    `${result.replaysChecked} replays checked`,
    `${result.cacheMissed} missed by the cache`,
    `${result.reads} reads (${result.readsChecked} checked, ${result.readsExempt} exempt)`,
    result.ok ? "OK" : `${result.violations.length} violations`,
  ].join(", ");
}
