import { Counter, Gauge, Histogram } from "@app/server";

// The counter's own metrics, each answering one operator question (its comment).
// Label values are fixed sets, present at 0 from the start so rates exist before a first error.

export const visitsCounted = new Counter({
  name: "counter_visits_total",
  help: "Visits committed in PostgreSQL with a new number.",
});
export const visitReplays = new Counter({
  name: "counter_visit_replays_total",
  help: "Visits answered with the number of an earlier attempt with the same Idempotency-Key.",
});
export const batchSize = new Histogram({
  name: "counter_batch_size",
  help: "Visits per PostgreSQL commit (one batch).",
  buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
});
export const commitDuration = new Histogram({
  name: "counter_commit_duration_seconds",
  help: "Time of one batch's commit in PostgreSQL, the wait for a connection included.",
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
});
export const postgresErrors = new Counter({
  name: "counter_postgres_errors_total",
  help: "Failed PostgreSQL operations by kind: timeout, connection (unreachable, lost) or query.",
  labelNames: ["kind"] as const,
});
export const visitsUnavailable = new Counter({
  name: "counter_visits_unavailable_total",
  help: "Visits answered 503 because PostgreSQL could not count them in time.",
});
export const cacheRequests = new Counter({
  name: "counter_cache_requests_total",
  help: "Cache reads of the count by result: hit, miss (PostgreSQL read), error (Redis failed).",
  labelNames: ["result"] as const,
});
export const cacheRaiseFailures = new Counter({
  name: "counter_cache_raise_failures_total",
  help: "Counts PostgreSQL confirmed that could not be written to the cache.",
});
export const postgresUnready = new Gauge({
  name: "counter_postgres_unready",
  help: "1 while this replica cannot serve for a reason that waiting will not heal (postgres-errors.ts), by reason.",
  labelNames: ["reason"] as const,
});
for (const kind of ["timeout", "connection", "query"]) postgresErrors.inc({ kind }, 0);
for (const result of ["hit", "miss", "error"]) cacheRequests.inc({ result }, 0);

/** One committed batch: `size` visits, `replays` of them earlier numbers given back. */
export function recordBatch(size: number, replays: number, seconds: number): void {
  batchSize.observe(size);
  commitDuration.observe(seconds);
  visitsCounted.inc(size - replays);
  visitReplays.inc(replays);
}

/** Which kind of PostgreSQL failure `error` is: pg's deadlines, network and SQLSTATE codes. */
export function postgresErrorKind(error: unknown): "timeout" | "connection" | "query" {
  const { code, message = "" } = (error ?? {}) as { code?: string; message?: string };
  // query_timeout, connectionTimeoutMillis; 57014: statement_timeout, a batch past its
  // deadline; 55P03: lock_timeout.
  if (code === "57014" || code === "55P03" || /timeout/i.test(message)) return "timeout";
  // Node's network errors; SQLSTATE 08xxx (connection) and 57P0x (server shutting down).
  if (/^(E[A-Z]+|08...|57P0.)$/.test(code ?? "") || /Connection terminated/i.test(message))
    return "connection";
  return "query";
}

/** Counts one failed PostgreSQL operation under its kind, and passes the error on. */
export function recordPostgresError(error: unknown): never {
  postgresErrors.inc({ kind: postgresErrorKind(error) });
  throw error;
}
