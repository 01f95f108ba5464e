import { Counter, Histogram } from "@app/server";

// The counter's own metrics, next to the kit's (http_request_duration_seconds and the
// process/Node defaults, packages/server). Each answers a question an operator asks;
// docs/COUNTER.md#metrics lists them with their questions. Names follow Prometheus'
// conventions: base units (seconds), `_total` for counters. Label values are a fixed
// set each, never data from a request.

/** How many visits are counted (committed in PostgreSQL) per second? */
export const visitsCounted = new Counter({
  name: "counter_visits_total",
  help: "Visits committed in PostgreSQL with a new number.",
});

/** How often do clients (or Nginx's retries) send a visit again, and get its first number? */
export const visitReplays = new Counter({
  name: "counter_visit_replays_total",
  help: "Visits answered with the number of an earlier attempt with the same Idempotency-Key.",
});

/** Is batching working: how many visits does one commit carry under this load? */
export const batchSize = new Histogram({
  name: "counter_batch_size",
  help: "Visits per PostgreSQL commit (one batch).",
  buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
});

/** Is PostgreSQL the bottleneck: how long does a batch's commit take? */
export const commitDuration = new Histogram({
  name: "counter_commit_duration_seconds",
  help: "Time of one batch's commit in PostgreSQL, the wait for a connection included.",
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
});

/** The kinds of PostgreSQL failure: each points somewhere else. */
export const POSTGRES_ERROR_KINDS = ["timeout", "connection", "query"] as const;
export type PostgresErrorKind = (typeof POSTGRES_ERROR_KINDS)[number];

/** Is PostgreSQL failing, and how: too slow, unreachable, or refusing a statement? */
export const postgresErrors = new Counter({
  name: "counter_postgres_errors_total",
  help: "Failed PostgreSQL operations, by kind: timeout (deadline missed), connection (unreachable, connection lost), query (an error from the server).",
  labelNames: ["kind"] as const,
});

/** Are users being turned away: how many visits got a 503 (PostgreSQL unavailable)? */
export const visitsUnavailable = new Counter({
  name: "counter_visits_unavailable_total",
  help: "Visits answered 503 because PostgreSQL could not count them in time.",
});

/** Is the cache earning its keep (hit ratio), and is it healthy (errors)? */
export const cacheRequests = new Counter({
  name: "counter_cache_requests_total",
  help: "Cache reads of the count, by result: hit (fresh count served), miss (none or stale: PostgreSQL read), error (Redis failed or unreachable).",
  labelNames: ["result"] as const,
});

/** How often could a confirmed count not be written to the cache (reads may lag, up to the TTL)? */
export const cacheRaiseFailures = new Counter({
  name: "counter_cache_raise_failures_total",
  help: "Counts PostgreSQL confirmed that could not be written to the cache.",
});

// Every label value exists from the start (at 0), so a rate() over them is defined from
// the first scrape, not only after the first error.
for (const kind of POSTGRES_ERROR_KINDS) postgresErrors.inc({ kind }, 0);
for (const result of ["hit", "miss", "error"] as const) cacheRequests.inc({ result }, 0);

/** One batch committed: `size` visits, of which `replays` got an earlier number back. */
export function recordBatch(options: { size: number; replays: number; seconds: number }): void {
  batchSize.observe(options.size);
  commitDuration.observe(options.seconds);
  visitsCounted.inc(options.size - options.replays);
  if (options.replays > 0) visitReplays.inc(options.replays);
}

// Node's network errors: PostgreSQL unreachable, or the connection cut.
const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ETIMEDOUT",
  "EPIPE",
]);

/** Which kind of PostgreSQL failure `error` is. */
export function postgresErrorKind(error: unknown): PostgresErrorKind {
  if (error instanceof Error && error.name === "DeadlineError") return "timeout";
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && CONNECTION_CODES.has(code)) return "connection";
  // SQLSTATE class 08: connection exceptions reported by the server; 57P0x: it shuts down.
  if (typeof code === "string" && /^(08|57P0)/.test(code)) return "connection";
  // pg's own messages when a connection ends under a query.
  if (
    error instanceof Error &&
    /Connection terminated|connection (?:is )?closed/i.test(error.message)
  )
    return "connection";
  return "query";
}

/** Counts one failed PostgreSQL operation under its kind. */
export function recordPostgresError(error: unknown): void {
  postgresErrors.inc({ kind: postgresErrorKind(error) });
}
