// The counter's tables and its one function, applied at every start by
// PostgresStore.ensureSchema(). Everything here is idempotent, so it also works on a
// volume made by an older version (whose `visit_counts` row carries over).

/** Created only where missing (see SCHEMA_PRESENT). */
export const TABLES = [
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

// The DDL runs only where something is missing: CREATE INDEX IF NOT EXISTS takes its
// table lock before it looks, so on every start it would stall the visits in flight.
export const SCHEMA_PRESENT = `SELECT to_regclass('visit_counts') IS NOT NULL
  AND to_regclass('visit_requests') IS NOT NULL
  AND to_regclass('visit_requests_age') IS NOT NULL AS present`;

/**
 * Counts a batch of visits: `anonymous` visits without a key, and one visit per key in
 * `keys` (distinct). One call is one statement in one transaction: one round trip.
 *
 * 1. Claims each key by inserting it with number 0. A key that is already there (a
 *    committed visit's number) stays as it is: that visit is being retried. If another
 *    transaction holds an uncommitted claim of the same key, the unique index makes this
 *    wait until that one ends, then sees its number (or inserts, if it rolled back).
 *    Keys are claimed in order, so two batches cannot wait for each other.
 * 2. Adds the anonymous visits and the keys claimed now to the counter's row. That
 *    UPDATE holds the row's lock until the commit, so batches that overlap in time get
 *    disjoint ranges of numbers, in commit order; the holder waits for nothing else.
 * 3. Gives each key claimed now its number: the end of the range, in key order (the
 *    anonymous visits get the start of it).
 *
 * Returns one row per key (its number, and whether it was counted before) and one row
 * with a null key: the count after the batch. (A new version of this function that
 * changes its arguments must take a new name: replicas of both versions run side by
 * side during a rolling update.)
 */
export const COUNT_VISITS = `
CREATE OR REPLACE FUNCTION count_visits(p_counter text, p_keys text[], p_anonymous integer)
RETURNS TABLE (key text, number bigint, replayed boolean)
LANGUAGE plpgsql AS $fn$
-- Inside, "key" is always the column (the output column has the same name).
#variable_conflict use_column
DECLARE
  claimed_now text[];
  total bigint;
BEGIN
  WITH claimed AS (
    INSERT INTO visit_requests AS r (counter_id, key, count)
    SELECT p_counter, k, 0 FROM unnest(p_keys) AS k ORDER BY k
    ON CONFLICT (counter_id, key) DO UPDATE SET count = r.count
    RETURNING r.key, r.count
  )
  SELECT coalesce(array_agg(claimed.key ORDER BY claimed.key) FILTER (WHERE claimed.count = 0), '{}')
  INTO claimed_now FROM claimed;

  UPDATE visit_counts AS v SET count = v.count + p_anonymous + cardinality(claimed_now)
  WHERE v.id = p_counter RETURNING v.count INTO total;
  IF total IS NULL THEN
    RAISE EXCEPTION 'counter % has no row in visit_counts', p_counter;
  END IF;

  UPDATE visit_requests AS r SET count = total - cardinality(claimed_now) + f.pos
  FROM unnest(claimed_now) WITH ORDINALITY AS f(key, pos)
  WHERE r.counter_id = p_counter AND r.key = f.key;

  RETURN QUERY
    SELECT r.key, r.count, NOT (r.key = ANY (claimed_now))
    FROM visit_requests AS r WHERE r.counter_id = p_counter AND r.key = ANY (p_keys)
    UNION ALL
    SELECT NULL, total, false;
END
$fn$`;
