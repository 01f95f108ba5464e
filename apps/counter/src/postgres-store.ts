import type { Logger } from "@app/server";
import pg from "pg";
import type { Increment, RequestKey } from "./redis-store.ts";

export interface PostgresOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  timeoutMs: number;
}

// The single source of truth for the schema, applied at every start: it is
// idempotent, so it also works on a volume created by an older version.
const MIGRATION = [
  `CREATE TABLE IF NOT EXISTS visit_counts (
     id    text   PRIMARY KEY,
     count bigint NOT NULL CHECK (count >= 0)
   )`,
  // The numbers given to requests that carried an Idempotency-Key while Redis was
  // down, so a retry gets its number back. Rows expire like the keys in Redis.
  `CREATE TABLE IF NOT EXISTS visit_requests (
     counter_id text        NOT NULL,
     key        text        NOT NULL,
     count      bigint      NOT NULL,
     created_at timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (counter_id, key)
   )`,
];
// Adds $3 visits above the greater of the stored count and $2 (the highest number
// the replica has handed out, so counts still pending in its write-behind are kept).
const INCREMENT = `
  INSERT INTO visit_counts AS v (id, count) VALUES ($1, $2::bigint + $3::bigint)
  ON CONFLICT (id) DO UPDATE SET count = GREATEST(v.count, $2::bigint) + $3::bigint
  RETURNING count`;

// Replicas starting together would race on CREATE TABLE; this lock serializes them.
const MIGRATION_LOCK_KEY = 727_001;

/** The durable side of the counter: one row per counter in `visit_counts`. */
export class PostgresStore {
  readonly pool: pg.Pool;
  readonly #id: string;
  readonly #logger: Logger;
  #schemaReady: Promise<void> | undefined;

  constructor(id: string, options: PostgresOptions, logger: Logger) {
    this.#id = id;
    this.#logger = logger;
    this.pool = new pg.Pool({
      ...options,
      max: 10,
      // Fail fast while PostgreSQL is down instead of queueing requests behind it.
      connectionTimeoutMillis: options.timeoutMs,
      query_timeout: options.timeoutMs,
      idleTimeoutMillis: 10_000,
      application_name: "counter",
    });
    // An idle client whose server restarted emits here; without a listener the
    // process would crash. The pool replaces the client on next use.
    this.pool.on("error", (error) => logger.warn({ err: error }, "postgres: idle client error"));
  }

  /**
   * Creates the table and the counter's row once per process. A failure is not
   * remembered, so the app starts (and serves from Redis) while PostgreSQL is
   * down, and migrates on the first call after it is back.
   */
  ensureSchema(): Promise<void> {
    this.#schemaReady ??= this.#migrate().catch((error: unknown) => {
      this.#schemaReady = undefined;
      throw error;
    });
    return this.#schemaReady;
  }

  async #migrate(): Promise<void> {
    await this.#transaction(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK_KEY]);
      for (const statement of MIGRATION) await client.query(statement);
      await client.query(
        "INSERT INTO visit_counts (id, count) VALUES ($1, 0) ON CONFLICT (id) DO NOTHING",
        [this.#id],
      );
    });
    this.#logger.info("postgres: schema ready");
  }

  /** Runs `work` in a transaction on one pooled connection. */
  async #transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    // The pool only listens for errors on idle clients; a checked-out client whose
    // server dies would otherwise crash the process with an unhandled 'error'.
    const onError = (error: Error) =>
      this.#logger.warn({ err: error }, "postgres: connection lost");
    client.on("error", onError);
    let failure: Error | undefined;
    try {
      await client.query("BEGIN");
      const result = await work(client);
      await client.query("COMMIT");
      return result;
    } catch (error) {
      failure = error instanceof Error ? error : new Error(String(error));
      await client.query("ROLLBACK").catch(() => {});
      throw error;
    } finally {
      client.off("error", onError);
      // A client that failed is discarded, not returned to the pool in an unknown state.
      client.release(failure);
    }
  }

  async read(): Promise<number> {
    await this.ensureSchema();
    const { rows } = await this.pool.query<{ count: string }>(
      "SELECT count FROM visit_counts WHERE id = $1",
      [this.#id],
    );
    return rows[0] ? Number(rows[0].count) : 0;
  }

  /**
   * Counts `visits` visits in PostgreSQL (the Redis-down path) in one statement and
   * returns the new count. `floor` is the highest number this instance has handed
   * out, so pending write-behind is included.
   */
  async increment(floor: number, visits = 1): Promise<number> {
    await this.ensureSchema();
    const { rows } = await this.pool.query<{ count: string }>(INCREMENT, [this.#id, floor, visits]);
    return Number(rows[0]?.count);
  }

  /**
   * Counts one visit that carries a request key, once: a retry of the same request
   * (same key, within its lifetime) gets the number the first attempt got. The key's
   * row is inserted first; a concurrent retry waits on it and then reads the number.
   */
  async incrementOnce(floor: number, request: RequestKey): Promise<Increment> {
    await this.ensureSchema();
    return this.#transaction(async (client) => {
      await client.query(
        `DELETE FROM visit_requests
         WHERE counter_id = $1 AND created_at < now() - make_interval(secs => $2)`,
        [this.#id, request.ttlSeconds],
      );
      const claimed = await client.query(
        `INSERT INTO visit_requests (counter_id, key, count) VALUES ($1, $2, 0)
         ON CONFLICT (counter_id, key) DO NOTHING`,
        [this.#id, request.key],
      );
      if (claimed.rowCount === 0) {
        const { rows } = await client.query<{ count: string }>(
          "SELECT count FROM visit_requests WHERE counter_id = $1 AND key = $2",
          [this.#id, request.key],
        );
        return { count: Number(rows[0]?.count), replayed: true };
      }
      const { rows } = await client.query<{ count: string }>(INCREMENT, [this.#id, floor, 1]);
      const count = Number(rows[0]?.count);
      await client.query(
        "UPDATE visit_requests SET count = $3 WHERE counter_id = $1 AND key = $2",
        [this.#id, request.key, count],
      );
      return { count, replayed: false };
    });
  }

  /** Write-behind: raise the stored count to `count`; never lowers it, so retries and replays are harmless. */
  async persistAtLeast(count: number): Promise<void> {
    await this.ensureSchema();
    await this.pool.query(
      `INSERT INTO visit_counts AS v (id, count) VALUES ($1, $2::bigint)
       ON CONFLICT (id) DO UPDATE SET count = EXCLUDED.count WHERE v.count < EXCLUDED.count`,
      [this.#id, count],
    );
  }

  /**
   * Runs `increment(durableCount)` while holding the row lock, then stores its
   * result. Every PostgreSQL-path increment takes the same lock, so the two
   * paths are serialized while they may overlap.
   */
  async lockedIncrement<T extends { count: number }>(
    increment: (durableCount: number) => Promise<T>,
  ): Promise<T> {
    await this.ensureSchema();
    return this.#transaction(async (client) => {
      const { rows } = await client.query<{ count: string }>(
        "SELECT count FROM visit_counts WHERE id = $1 FOR UPDATE",
        [this.#id],
      );
      const counted = await increment(Number(rows[0]?.count ?? 0));
      await client.query("UPDATE visit_counts SET count = GREATEST(count, $2) WHERE id = $1", [
        this.#id,
        counted.count,
      ]);
      return counted;
    });
  }

  async ping(): Promise<void> {
    await this.pool.query("SELECT 1");
  }

  close(): Promise<void> {
    return this.pool.end();
  }
}
