import type { Logger } from "@app/server";
import pg from "pg";
import { DeadlineError, withDeadline } from "./deadline.ts";

export interface PostgresOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** Deadline of one request's work (queue, connection, every statement). */
  timeoutMs: number;
}

/** The number a visit got, and whether it is the answer to a retry (the key was counted before). */
export interface Increment {
  count: number;
  replayed: boolean;
}

/** A committed batch: each visit's number, in order, and the counter's count after it. */
export interface CountedBatch {
  visits: Increment[];
  count: number;
}

// Applied at every start: idempotent, so it also works on a volume made by an older version
// (whose `visit_counts` row carries over).
const MIGRATION = [
  `CREATE TABLE IF NOT EXISTS visit_counts (
     id    text   PRIMARY KEY,
     count bigint NOT NULL CHECK (count >= 0)
   )`,
  // One row per Idempotency-Key: the number its visit got, so a retry gets it back.
  `CREATE TABLE IF NOT EXISTS visit_requests (
     counter_id text        NOT NULL,
     key        text        NOT NULL,
     count      bigint      NOT NULL,
     created_at timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (counter_id, key)
   )`,
  // Expired keys are deleted oldest first.
  "CREATE INDEX IF NOT EXISTS visit_requests_age ON visit_requests (counter_id, created_at)",
];
// Replicas starting together would race on CREATE TABLE; this lock serializes them.
const MIGRATION_LOCK_KEY = 727_001;
// The DDL runs only where something is missing: CREATE INDEX IF NOT EXISTS takes its
// table lock before it looks, so on every start it would stall the visits in flight.
const SCHEMA_PRESENT = `SELECT to_regclass('visit_counts') IS NOT NULL
  AND to_regclass('visit_requests') IS NOT NULL
  AND to_regclass('visit_requests_age') IS NOT NULL AS present`;

// Adds $2 visits. The UPDATE holds the row's lock until the transaction ends, so batches
// that overlap in time get disjoint ranges of numbers, in commit order.
const BUMP = "UPDATE visit_counts SET count = count + $2 WHERE id = $1 RETURNING count";

// Claims each key by inserting it with count 0. A key that is already there (count > 0: a
// committed visit's number) is returned as it is: that visit is being retried. If another
// transaction holds an uncommitted claim of the same key, the unique index makes this wait
// until that one ends, then returns its number (or inserts, if it rolled back).
const CLAIM = `
  INSERT INTO visit_requests (counter_id, key, count)
  SELECT $1, key, 0 FROM unnest($2::text[]) AS key ORDER BY key
  ON CONFLICT (counter_id, key) DO UPDATE SET count = visit_requests.count
  RETURNING key, count`;

// Adds the new visits and writes each new key's number (its position in the new range).
const BUMP_AND_NUMBER = `
  WITH bumped AS (${BUMP}),
  numbered AS (
    UPDATE visit_requests AS r SET count = (SELECT count FROM bumped) - $2 + v.pos
    FROM unnest($3::text[], $4::int[]) AS v(key, pos)
    WHERE r.counter_id = $1 AND r.key = v.key
  )
  SELECT count FROM bumped`;

// At most `$3` expired keys per call, skipping rows another replica is deleting.
const DELETE_EXPIRED = `
  DELETE FROM visit_requests WHERE ctid IN (
    SELECT ctid FROM visit_requests
    WHERE counter_id = $1 AND created_at < now() - make_interval(secs => $2)
    ORDER BY created_at LIMIT $3
    FOR UPDATE SKIP LOCKED)`;

/** The counter's only source of numbers: one row per counter in `visit_counts`. */
export class PostgresStore {
  readonly pool: pg.Pool;
  readonly #id: string;
  readonly #timeoutMs: number;
  readonly #logger: Logger;
  #schemaReady: Promise<void> | undefined;

  constructor(id: string, options: PostgresOptions, logger: Logger) {
    const { timeoutMs, ...connection } = options;
    this.#id = id;
    this.#timeoutMs = timeoutMs;
    this.#logger = logger;
    this.pool = new pg.Pool({
      ...connection,
      max: 10,
      connectionTimeoutMillis: timeoutMs,
      // The server's own deadlines, so a connection whose client gave up (see #withClient),
      // or a replica that froze in the middle of a batch, cannot hold the counter's row
      // lock (and stall every replica's visits) for longer than a request may take.
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
   * Creates the tables and the counter's row, once per process. A failure is not
   * remembered: the app starts while PostgreSQL is down and migrates on first use.
   */
  ensureSchema(): Promise<void> {
    const migrate = async (client: pg.PoolClient) => {
      await client.query("BEGIN");
      await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK_KEY]);
      const { rows } = await client.query<{ present: boolean }>(SCHEMA_PRESENT);
      if (!rows[0]?.present) for (const statement of MIGRATION) await client.query(statement);
      // Only where the row is missing: ON CONFLICT alone would wait for a batch holding it.
      await client.query(
        `INSERT INTO visit_counts (id, count) SELECT $1, 0
         WHERE NOT EXISTS (SELECT 1 FROM visit_counts WHERE id = $1)`,
        [this.#id],
      );
      await client.query("COMMIT");
      this.#logger.info("postgres: schema ready");
    };
    this.#schemaReady ??= this.#withClient(10_000, migrate, false).catch((error: unknown) => {
      this.#schemaReady = undefined;
      throw error;
    });
    return this.#schemaReady;
  }

  /**
   * Counts a batch of visits in one transaction and returns each visit's number, in
   * order, and the count after the batch. `keys[i]` is visit i's Idempotency-Key, if
   * any: a key counted before (or earlier in this batch) gets its number back,
   * `replayed`. Resolves only after the commit, within `timeoutMs` or not at all.
   */
  countBatch(keys: ReadonlyArray<string | undefined>, timeoutMs: number): Promise<CountedBatch> {
    const claims = [...new Set(keys.filter((key) => key !== undefined))];
    return this.#withClient(timeoutMs, async (client) => {
      // Without keys, one autocommit statement is the whole transaction: one round trip.
      if (claims.length > 0) await client.query("BEGIN");
      const claimed =
        claims.length === 0
          ? []
          : (await client.query<{ key: string; count: string }>(CLAIM, [this.#id, claims])).rows;
      const committed = new Map(claimed.map((row) => [row.key, Number(row.count)]));
      // Each visit's place in the new range (1…n), or the number its key already has.
      const positions = new Map<string, number>(); // key claimed now → its place
      let n = 0;
      const slots = keys.map((key) => {
        if (key === undefined) return { place: ++n, replayed: false };
        const number = committed.get(key) ?? 0;
        if (number > 0) return { number, replayed: true };
        const place = positions.get(key);
        if (place !== undefined) return { place, replayed: true }; // again in this batch
        positions.set(key, ++n);
        return { place: n, replayed: false };
      });
      const count =
        claims.length === 0
          ? await this.#count(client, BUMP, [this.#id, n])
          : await this.#count(client, BUMP_AND_NUMBER, [
              this.#id,
              n,
              [...positions.keys()],
              [...positions.values()],
            ]);
      if (claims.length > 0) await client.query("COMMIT");
      const visits = slots.map((slot) => ({
        count: slot.number ?? count - n + (slot.place ?? 0),
        replayed: slot.replayed,
      }));
      return { visits, count };
    });
  }

  /** The committed count. */
  async read(): Promise<number> {
    return this.#withClient(this.#timeoutMs, (client) =>
      this.#count(client, "SELECT count FROM visit_counts WHERE id = $1", [this.#id]),
    );
  }

  /** Deletes at most `limit` of the keys older than `ttlSeconds`; returns how many. */
  async deleteExpiredKeys(ttlSeconds: number, limit: number): Promise<number> {
    const result = await this.#withClient(this.#timeoutMs, (client) =>
      client.query(DELETE_EXPIRED, [this.#id, ttlSeconds, limit]),
    );
    return result.rowCount ?? 0;
  }

  async ping(): Promise<void> {
    await this.#withClient(this.#timeoutMs, (client) => client.query("SELECT 1"));
  }

  close(): Promise<void> {
    return this.pool.end();
  }

  async #count(client: pg.PoolClient, text: string, values: unknown[]): Promise<number> {
    const { rows } = await client.query<{ count: string }>(text, values);
    const count = Number(rows[0]?.count);
    // No row: the migration has not created it (or it was deleted by hand).
    if (!Number.isSafeInteger(count)) throw new Error(`postgres: counter row ${this.#id} missing`);
    return count;
  }

  /**
   * Runs `work` on one pooled connection within `timeoutMs`, the wait for a connection
   * and the schema (on first use) included. A connection that failed or ran out of time
   * is destroyed, never reused: closing it also makes the server roll back whatever it
   * had not committed.
   */
  async #withClient<T>(
    timeoutMs: number,
    work: (client: pg.PoolClient) => Promise<T>,
    migrateFirst = true,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    if (migrateFirst) await withDeadline(this.ensureSchema(), timeoutMs, "postgres: no schema");
    if (deadline <= Date.now()) throw new DeadlineError("postgres: no time left");
    const checkout = this.pool.connect();
    let client: pg.PoolClient;
    try {
      client = await withDeadline(checkout, deadline - Date.now(), "postgres: no connection");
    } catch (error) {
      // A connection that arrives after the deadline goes back to the pool, unused.
      checkout.then((late) => late.release()).catch(() => {});
      throw error;
    }
    // The pool only listens for errors on idle clients; a checked-out client whose
    // server dies would otherwise crash the process with an unhandled 'error'.
    const onError = (error: Error) =>
      this.#logger.debug({ err: error }, "postgres: connection lost");
    client.on("error", onError);
    try {
      const result = await withDeadline(work(client), deadline - Date.now(), "postgres: no answer");
      client.off("error", onError);
      client.release();
      return result;
    } catch (error) {
      client.release(error instanceof Error ? error : true);
      throw error;
    }
  }
}
