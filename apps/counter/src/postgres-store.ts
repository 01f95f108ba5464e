import type { Logger } from "@app/server";
import pg from "pg";
import type { Increment } from "./redis-store.ts";

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
  // Expired keys are deleted by age.
  "CREATE INDEX IF NOT EXISTS visit_requests_age ON visit_requests (counter_id, created_at)",
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
   * Counts a batch of visits in PostgreSQL (the Redis-down path): one result per
   * visit, in order. `floor` is the highest number this instance has handed out, so
   * pending write-behind is included. Visits without a key are one statement. With
   * keys it is one transaction: each key is claimed in `visit_requests` first (a
   * concurrent claim of the same key waits for this one to commit), only the new
   * ones are counted, and a key that was already there gets its number back,
   * `replayed`. undefined for a key whose row vanished meanwhile (expired).
   */
  async countBatch(
    floor: number,
    idempotencyKeys: ReadonlyArray<string | undefined>,
    keyTtlSeconds: number,
  ): Promise<Array<Increment | undefined>> {
    await this.ensureSchema();
    const keys = [...new Set(idempotencyKeys.filter((key) => key !== undefined))];
    if (keys.length === 0) {
      const count = await this.#increment(this.pool, floor, idempotencyKeys.length);
      let number = count - idempotencyKeys.length;
      return idempotencyKeys.map(() => ({ count: ++number, replayed: false }));
    }
    return this.#transaction(async (client) => {
      // The counter's row lock first, as in lockedIncrement: a replica counting in Redis
      // under it (just after Redis returned) then sees every key this batch claims.
      await client.query("SELECT 1 FROM visit_counts WHERE id = $1 FOR UPDATE", [this.#id]);
      await this.#deleteExpiredRequests(client, keyTtlSeconds);
      const claimed = await client.query<{ key: string }>(
        `INSERT INTO visit_requests (counter_id, key, count)
         SELECT $1, key, 0 FROM unnest($2::text[]) AS key
         ON CONFLICT (counter_id, key) DO NOTHING
         RETURNING key`,
        [this.#id, keys],
      );
      const isNew = new Set(claimed.rows.map((row) => row.key));
      // Counted now: the visits without a key, and the first visit with each new key.
      const seen = new Set<string>();
      const countedNow = idempotencyKeys.flatMap((key, i) => {
        if (key === undefined) return [i];
        if (!isNew.has(key) || seen.has(key)) return [];
        seen.add(key);
        return [i];
      });
      const numbers = new Map<number, number>(); // visit index → its number
      const keyNumbers = new Map<string, number>(); // key → its number
      if (countedNow.length > 0) {
        let number = (await this.#increment(client, floor, countedNow.length)) - countedNow.length;
        for (const i of countedNow) {
          numbers.set(i, ++number);
          const key = idempotencyKeys[i];
          if (key !== undefined) keyNumbers.set(key, number);
        }
        await client.query(
          `UPDATE visit_requests AS r SET count = v.count
           FROM unnest($2::text[], $3::bigint[]) AS v(key, count)
           WHERE r.counter_id = $1 AND r.key = v.key`,
          [this.#id, [...keyNumbers.keys()], [...keyNumbers.values()]],
        );
      }
      const replays = keys.filter((key) => !isNew.has(key));
      if (replays.length > 0) {
        const { rows } = await client.query<{ key: string; count: string }>(
          "SELECT key, count FROM visit_requests WHERE counter_id = $1 AND key = ANY($2::text[])",
          [this.#id, replays],
        );
        for (const row of rows) keyNumbers.set(row.key, Number(row.count));
      }
      // Any other visit repeats its key's number: claimed by an earlier request, or by
      // an earlier visit of this batch.
      return idempotencyKeys.map((key, i) => {
        const number = numbers.get(i);
        if (number !== undefined) return { count: number, replayed: false };
        const earlier = key === undefined ? undefined : keyNumbers.get(key);
        return earlier === undefined ? undefined : { count: earlier, replayed: true };
      });
    });
  }

  /** Deletes the keys older than their lifetime. */
  async deleteExpiredRequests(keyTtlSeconds: number): Promise<void> {
    await this.#deleteExpiredRequests(this.pool, keyTtlSeconds);
  }

  async #deleteExpiredRequests(client: pg.Pool | pg.PoolClient, keyTtlSeconds: number) {
    await client.query(
      `DELETE FROM visit_requests
       WHERE counter_id = $1 AND created_at < now() - make_interval(secs => $2)`,
      [this.#id, keyTtlSeconds],
    );
  }

  async #increment(client: pg.Pool | pg.PoolClient, floor: number, visits: number) {
    const { rows } = await client.query<{ count: string }>(INCREMENT, [this.#id, floor, visits]);
    return Number(rows[0]?.count);
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
   * paths are serialized while they may overlap. A visit whose `idempotencyKey` was
   * counted on the PostgreSQL path (while Redis was down) gets that number back
   * instead: the retry must not count again now that Redis is back.
   */
  async lockedIncrement(
    increment: (durableCount: number) => Promise<Increment>,
    request?: { idempotencyKey: string; ttlSeconds: number },
  ): Promise<Increment> {
    await this.ensureSchema();
    return this.#transaction(async (client) => {
      const { rows } = await client.query<{ count: string }>(
        "SELECT count FROM visit_counts WHERE id = $1 FOR UPDATE",
        [this.#id],
      );
      if (request !== undefined) {
        const earlier = await client.query<{ count: string }>(
          `SELECT count FROM visit_requests
           WHERE counter_id = $1 AND key = $2 AND created_at > now() - make_interval(secs => $3)`,
          [this.#id, request.idempotencyKey, request.ttlSeconds],
        );
        if (earlier.rows[0]) return { count: Number(earlier.rows[0].count), replayed: true };
      }
      const counted = await increment(Number(rows[0]?.count ?? 0));
      await client.query("UPDATE visit_counts SET count = GREATEST(count, $2) WHERE id = $1", [
        this.#id,
        counted.count,
      ]);
      return counted;
    });
  }

  /**
   * The keys of visits counted on the PostgreSQL path that are still within their
   * lifetime, with the seconds they have left.
   */
  async recentRequests(
    keyTtlSeconds: number,
  ): Promise<Array<{ key: string; count: number; secondsLeft: number }>> {
    await this.ensureSchema();
    const { rows } = await this.pool.query<{ key: string; count: string; seconds_left: number }>(
      `SELECT key, count,
              ceil($2 - extract(epoch FROM now() - created_at))::int AS seconds_left
       FROM visit_requests
       WHERE counter_id = $1 AND created_at > now() - make_interval(secs => $2)`,
      [this.#id, keyTtlSeconds],
    );
    return rows.map((row) => ({
      key: row.key,
      count: Number(row.count),
      secondsLeft: row.seconds_left,
    }));
  }

  async ping(): Promise<void> {
    await this.pool.query("SELECT 1");
  }

  close(): Promise<void> {
    return this.pool.end();
  }
}
