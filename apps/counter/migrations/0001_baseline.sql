-- Up Migration
-- 0001, the baseline: the schema as the counter had it before migrations were versioned
-- (apps/counter/src/schema.ts created it at every start), so it is written to accept a
-- database that already has it: a volume made by an older version upgrades in place and
-- keeps its rows. Applied once per database by the migrate job (apps/counter/src/migrate.ts)
-- as counter_owner, in one transaction with its row in pgmigrations; no down migration:
-- a deploy never goes back (docs/COUNTER.md, "Migrations").

-- IF NOT EXISTS: on an old volume these exist, owned by counter_owner since db-setup's
-- REASSIGN OWNED (infra/postgres/roles.sql).
CREATE TABLE IF NOT EXISTS visit_counts (
  id    text   PRIMARY KEY,
  count bigint NOT NULL CHECK (count >= 0));
-- One row per Idempotency-Key: the number its visit got, so a retry gets it back.
CREATE TABLE IF NOT EXISTS visit_requests (
  counter_id text        NOT NULL,
  key        text        NOT NULL,
  count      bigint      NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (counter_id, key));
-- Expired keys are deleted oldest first. (Not CONCURRENTLY: here the table is either new
-- or already has the index, so nothing is built on a live table.)
CREATE INDEX IF NOT EXISTS visit_requests_age ON visit_requests (counter_id, created_at);

-- The counter's row, only where visit_counts is empty: a new database, or one made by
-- an older version before its first visit. A database that has rows keeps them, and a
-- row missing there stays missing (an incident, not a fresh start). It starts above
-- every number a remembered key holds. The id is the migrate job's COUNTER_ID, passed
-- as the session setting counter.id.
INSERT INTO visit_counts (id, count)
  SELECT current_setting('counter.id'),
         (SELECT coalesce(max(r.count), 0) FROM visit_requests AS r
           WHERE r.counter_id = current_setting('counter.id'))
   WHERE NOT EXISTS (SELECT FROM visit_counts);

-- The migrate job's own table: the counter reads it (readiness, checkSchema) and may not
-- write it (the default privileges in roles.sql would give it DML on every new table).
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON pgmigrations FROM counter;

/*
 * count_visits: counts a batch of visits: `anonymous` visits without a key, and one
 * visit per key in `keys` (distinct). One call is one statement in one transaction: one
 * round trip.
 *
 * 1. Takes the counter's row lock, held until the commit: batches, from every replica,
 *    run one after another. No lock is waited for past `deadline` (the batch's, on the
 *    replica's clock), and a batch that gets the lock after it fails: one that its
 *    replica gave up on (a stalled connection delivers it late) is never counted. A
 *    missing row fails the batch with P0002 (no_data_found).
 * 2. Deletes expired keys, oldest first, at most twice as many as the batch brings (at
 *    least 100): the table keeps up with any rate, and no statement grows with a backlog.
 * 3. Locks the rows of the keys that are still there: each was counted by an earlier
 *    batch, its visit is being retried and gets that number back. (Every deletion runs
 *    under the counter's row lock, so none can come between this look-up and step 4; the
 *    row locks keep it so for anyone else deleting keys.)
 * 4. The new visits get the next numbers: those without a key first, then the new keys
 *    in key order, each stored with its number; the row gets the new count.
 *
 * Returns one row per key (its number, and whether it was counted before) and one row
 * with a null key: the count after the batch. Only a migration replaces it (CREATE OR
 * REPLACE, same arguments): a change the running replicas cannot live with is a new
 * function beside this one, expand then contract (docs/COUNTER.md).
 */
CREATE OR REPLACE FUNCTION count_visits(
  p_counter text, p_keys text[], p_anonymous integer, p_deadline timestamptz, p_key_ttl_seconds integer)
RETURNS TABLE (key text, number bigint, replayed boolean)
LANGUAGE plpgsql
-- Plan each statement for the table as it is now: a plan cached while visit_requests was
-- empty (a sequential scan) would be kept, and grow slower with every key stored.
SET plan_cache_mode = force_custom_plan
AS $fn$
-- Inside, "key" is always the column (the output column has the same name).
#variable_conflict use_column
DECLARE
  before bigint;
  added integer;
BEGIN
  -- (lock_timeout 0 would mean none: at least 1 ms.)
  PERFORM set_config('lock_timeout',
    greatest(1, ceil(extract(epoch FROM p_deadline - clock_timestamp()) * 1000))::int || 'ms', true);
  SELECT v.count INTO before FROM visit_counts AS v WHERE v.id = p_counter FOR UPDATE;
  IF NOT FOUND THEN
    -- Never created here: a missing row is a lost or wrong database, and a row made now
    -- would hand out numbers again from (near) 0. The migrate job creates it once, with
    -- the tables; after that only a restore brings it back (docs/COUNTER.md).
    RAISE EXCEPTION 'counter row missing: no row % in visit_counts', p_counter
      USING ERRCODE = 'no_data_found', -- P0002
        HINT = 'restore the database (infra/restore.sh); do not insert a new row';
  END IF;
  IF clock_timestamp() > p_deadline THEN
    RAISE EXCEPTION 'batch past its deadline' USING ERRCODE = 'query_canceled';
  END IF;

  DELETE FROM visit_requests WHERE ctid IN (
    SELECT ctid FROM visit_requests AS r
    WHERE r.counter_id = p_counter AND r.created_at < now() - make_interval(secs => p_key_ttl_seconds)
    ORDER BY r.created_at LIMIT greatest(100, 2 * cardinality(p_keys)));

  RETURN QUERY
    SELECT r.key, r.count, true FROM visit_requests AS r
    WHERE r.counter_id = p_counter AND r.key = ANY (p_keys)
    FOR UPDATE;

  RETURN QUERY
    INSERT INTO visit_requests AS r (counter_id, key, count)
    SELECT p_counter, k, before + p_anonymous + row_number() OVER (ORDER BY k)
    FROM unnest(p_keys) AS k
    WHERE NOT EXISTS (SELECT 1 FROM visit_requests AS old WHERE old.counter_id = p_counter AND old.key = k)
    RETURNING r.key, r.count, false;
  GET DIAGNOSTICS added = ROW_COUNT;

  UPDATE visit_counts AS v SET count = before + p_anonymous + added WHERE v.id = p_counter;
  RETURN QUERY SELECT NULL::text, before + p_anonymous + added, false;
END
$fn$;
