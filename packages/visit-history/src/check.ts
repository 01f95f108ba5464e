import { acknowledgement, type History, type VisitRecord } from "./history.ts";

export interface CheckOptions {
  /** PostgreSQL's count before the first visit of the history. */
  initialCount: number;
  /** PostgreSQL's count after the last visit had its answer. */
  finalCount: number;
  /**
   * How far behind PostgreSQL a read may be (the counter's CACHE_TTL): a read must show
   * every number acknowledged this long before it started. Default 0.
   */
  cacheTtlMs?: number;
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
  reads: number;
  readsChecked: number;
  /** Checked reads answered from the cache (`X-Cache: hit`) and from PostgreSQL (`miss`). */
  cacheHits: number;
  cacheMisses: number;
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
 * (e) reads: a read shows at least every number acknowledged `cacheTtlMs` before it
 *     started, and never more than PostgreSQL can have had when it ended: the initial
 *     count plus every time a visit sent by then may have been counted (nor more than
 *     the final count).
 */
export function checkHistory(history: History, options: CheckOptions): CheckResult {
  const { initialCount, finalCount, cacheTtlMs = 0, durableKeys, proxyRetries = false } = options;
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

  // (e) reads: sweep the reads in start order for the floor, in end order for the ceiling.
  const ackEnds = acked
    .map(({ ack, count }) => ({ at: ack.end, count }))
    .sort((x, y) => x.at - y.at);
  // Each moment a visit may have been counted once more: every attempt of an unkeyed
  // visit, the first of a keyed one.
  const sends = history.visits
    .flatMap((visit) => (visit.key === undefined ? visit.attempts : visit.attempts.slice(0, 1)))
    .map((attempt) => attempt.start)
    .sort((x, y) => x - y);
  const reads = history.reads.filter((read) => read.count !== undefined);
  const ceilings = new Map<(typeof reads)[number], number>();
  let sent = 0;
  for (const read of [...reads].sort((x, y) => x.end - y.end)) {
    while (sent < sends.length && (sends[sent] ?? 0) < read.end) sent++;
    ceilings.set(read, initialCount + sent);
  }
  let index = 0;
  let floor = initialCount;
  for (const read of [...reads].sort((x, y) => x.start - y.start)) {
    while (index < ackEnds.length && (ackEnds[index]?.at ?? 0) < read.start - cacheTtlMs) {
      floor = Math.max(floor, ackEnds[index]?.count ?? 0);
      index++;
    }
    const count = read.count as number;
    const ceiling = Math.min(ceilings.get(read) ?? 0, finalCount);
    const at = `a read at ${read.start.toFixed(0)} ms from ${read.target} (${read.cache ?? "?"})`;
    if (count < floor) report("(e)", `${at} showed ${count}, but ${floor} had been acknowledged`);
    if (count > ceiling)
      report("(e)", `${at} showed ${count}, more than the ${ceiling} that could be counted`);
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
    reads: history.reads.length,
    readsChecked: reads.length,
    cacheHits: reads.filter((read) => read.cache === "hit").length,
    cacheMisses: reads.filter((read) => read.cache === "miss").length,
  };
}

/** One line for a log or a report. */
export function summarize(result: CheckResult): string {
  return [
    `${result.visits} visits (${result.attempts} attempts)`,
    `${result.acknowledged} acknowledged`,
    `${result.phantoms} phantoms (≤ ${result.unanswered} unanswered)`,
    `${result.replaysChecked} replays checked`,
    `${result.reads} reads (${result.readsChecked} checked: ${result.cacheHits} cache hits, ${result.cacheMisses} misses)`,
    result.ok ? "OK" : `${result.violations.length} violations`,
  ].join(", ");
}
