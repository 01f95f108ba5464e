import type { Logger } from "@app/server";
import pg from "pg";
import type { CounterConfig } from "./config.ts";
import { checkSchema, SchemaError } from "./schema.ts";

/** The number a visit got, and whether it is the answer to a retry (the key was counted before). */
export interface Increment {
  count: number;
  replayed: boolean;
}

/**
 * The counter's only source of numbers: one row per counter in `visit_counts`. Every
 * statement has a deadline on both sides: the client gives up on its answer
 * (`query_timeout`, and the pool then closes the connection, which makes the server roll
 * back whatever it had not committed) and the server on its work (`statement_timeout`),
 * so neither a frozen server nor a frozen replica holds the counter's row for long.
 */
export class PostgresStore {
  readonly pool: pg.Pool;
  readonly #config: CounterConfig;

  constructor(config: CounterConfig, logger: Logger) {
    const timeoutMs = config.POSTGRES_TIMEOUT_MS;
    this.#config = config;
    this.pool = new pg.Pool({
      host: config.POSTGRES_HOST,
      port: config.POSTGRES_PORT,
      user: config.POSTGRES_USER,
      password: config.POSTGRES_PASSWORD,
      database: config.POSTGRES_DB,
      max: 10,
      connectionTimeoutMillis: timeoutMs,
      query_timeout: timeoutMs,
      statement_timeout: timeoutMs,
      idle_in_transaction_session_timeout: timeoutMs,
      // A visit is answered only once its commit is on disk, whatever the server's default.
      options: "-c synchronous_commit=on",
      idleTimeoutMillis: 10_000,
      application_name: "counter",
    });
    // An idle client whose server restarted emits here; without a listener the
    // process would crash. The pool replaces the client on next use.
    this.pool.on("error", (error) => logger.warn({ err: error }, "postgres: idle client error"));
  }

  /**
   * Resolves when the database has the schema this build needs (at least its newest
   * migration) and this counter's row; otherwise a SchemaError says what is missing.
   * It only looks: the migrate job makes the schema, and nothing here re-creates it.
   */
  checkSchema(): Promise<void> {
    return checkSchema(this.pool, this.#config.COUNTER_ID);
  }

  /**
   * Counts a batch of visits in one transaction and returns each visit's number, in
   * order, and the counter's count after the batch. `keys[i]` is visit i's Idempotency-Key, if
   * any: a key counted before (or earlier in this batch) gets its number back,
   * `replayed`. Resolves only after the commit, within `timeoutMs` or not at all.
   */
  async countBatch(
    keys: ReadonlyArray<string | undefined>,
    timeoutMs: number,
  ): Promise<{ visits: Increment[]; count: number }> {
    const distinct = [...new Set(keys.filter((key) => key !== undefined))];
    const anonymous = keys.length - keys.filter((key) => key !== undefined).length;
    const { rows } = await this.#query<{ key: string | null; number: string; replayed: boolean }>({
      // Named: each connection prepares it once, then skips parsing and planning.
      name: "count_visits",
      text: "SELECT key, number, replayed FROM count_visits($1, $2::text[], $3, to_timestamp($4 / 1000.0), $5)",
      // The deadline as a moment, not a duration: it holds however late the server starts.
      values: [
        this.#config.COUNTER_ID,
        distinct,
        anonymous,
        Date.now() + timeoutMs,
        this.#config.IDEMPOTENCY_KEY_TTL_SECONDS,
      ],
      query_timeout: timeoutMs,
    });
    const total = Number(rows.find((row) => row.key === null)?.number);
    const byKey = new Map(rows.filter((row) => row.key !== null).map((row) => [row.key, row]));
    if (!Number.isSafeInteger(total) || byKey.size !== distinct.length)
      throw new Error("postgres: count_visits returned an inconsistent batch");
    // The anonymous visits have the start of the new range, in the order they came.
    let next = total - rows.filter((row) => row.key !== null && !row.replayed).length - anonymous;
    const seen = new Set<string>();
    const visits = keys.map((key) => {
      if (key === undefined) return { count: ++next, replayed: false };
      const row = byKey.get(key);
      const repeated = seen.has(key); // again in this batch: the same number, a replay
      seen.add(key);
      return { count: Number(row?.number), replayed: (row?.replayed ?? false) || repeated };
    });
    return { visits, count: total };
  }

  /** The committed count. */
  async read(): Promise<number> {
    const { rows } = await this.#query<{ count: string }>({
      name: "read_count",
      text: "SELECT count FROM visit_counts WHERE id = $1",
      values: [this.#config.COUNTER_ID],
    });
    // No row is not "nothing counted yet": the migrate job creates it with the table, so
    // its absence is a lost database, never answered as 0.
    if (rows[0] === undefined) {
      throw new SchemaError(
        "COUNTER_ROW_MISSING",
        `counter row missing: no row '${this.#config.COUNTER_ID}' in visit_counts`,
      );
    }
    return Number(rows[0].count);
  }

  close(): Promise<void> {
    return this.pool.end();
  }

  /**
   * One statement on a pooled connection (pg-pool closes a connection whose statement
   * failed). `query_timeout` overrides the pool's deadline. A missing table or function
   * surfaces as PostgreSQL's own 42P01 / 42883, a missing row as P0002: the caller's 503.
   */
  #query<Row extends pg.QueryResultRow>(
    query: pg.QueryConfig & { query_timeout?: number },
  ): Promise<pg.QueryResult<Row>> {
    return this.pool.query<Row>(query);
  }
}
