// What this build needs of the database, and the check that it is there. The schema itself
// is made only by the migrate job (apps/counter/migrations, run by src/migrate.ts as the
// owner role); the counter's runtime role cannot create or change it, and no code path
// of the counter re-creates a table or the counter's row (docs/COUNTER.md, "Migrations").
import type pg from "pg";

/**
 * The newest migration this build's SQL relies on. A database that has run it (and any
 * later one: an older build keeps serving after a newer migration, which only expands)
 * is recent enough. Raise it with a migration the code starts to use.
 */
export const REQUIRED_MIGRATION = "0001_baseline";

/** What is wrong with the database, for readiness and the error classes (postgres-errors.ts). */
export type SchemaProblem = "SCHEMA_MISSING" | "SCHEMA_OUTDATED" | "COUNTER_ROW_MISSING";

/** A database this build cannot serve from; `code` says why, the message names what is missing. */
export class SchemaError extends Error {
  readonly code: SchemaProblem;

  constructor(code: SchemaProblem, message: string) {
    super(message);
    this.name = "SchemaError";
    this.code = code;
  }
}

// First whether the objects exist (a query that names a missing table fails to parse).
const OBJECTS = `
SELECT to_regclass('pgmigrations') IS NOT NULL AS versioned,
       array_remove(ARRAY[
         CASE WHEN to_regclass('visit_counts') IS NULL THEN 'table visit_counts' END,
         CASE WHEN to_regclass('visit_requests') IS NULL THEN 'table visit_requests' END,
         CASE WHEN to_regprocedure('count_visits(text, text[], integer, timestamptz, integer)') IS NULL
              THEN 'function count_visits' END], NULL) AS missing`;

const STATE = `
SELECT EXISTS (SELECT FROM pgmigrations WHERE name = $1) AS migrated,
       (SELECT name FROM pgmigrations ORDER BY run_on DESC, id DESC LIMIT 1) AS newest,
       EXISTS (SELECT FROM visit_counts WHERE id = $2) AS has_row`;

/**
 * Resolves when the schema is at least REQUIRED_MIGRATION and `counterId`'s row exists;
 * otherwise throws a SchemaError. Reads only (two catalog look-ups and two index probes):
 * cheap enough for every readiness probe, and it takes no lock a migration would wait for.
 */
export async function checkSchema(
  client: Pick<pg.Pool, "query">,
  counterId: string,
): Promise<void> {
  const objects = await client.query<{ versioned: boolean; missing: string[] }>(OBJECTS);
  const { versioned, missing } = objects.rows[0] ?? { versioned: false, missing: [] };
  if (!versioned && missing.length === 3) {
    throw new SchemaError(
      "SCHEMA_MISSING",
      "the database has no counter schema: the migrate job has not run on it (or it lost its data: infra/restore.sh)",
    );
  }
  if (!versioned) {
    throw new SchemaError(
      "SCHEMA_OUTDATED",
      `no pgmigrations table: the schema predates versioned migrations; run the migrate job (needs ${REQUIRED_MIGRATION})`,
    );
  }
  if (missing.length > 0) {
    throw new SchemaError("SCHEMA_MISSING", `missing from the database: ${missing.join(", ")}`);
  }
  const state = await client.query<{ migrated: boolean; newest: string | null; has_row: boolean }>(
    STATE,
    [REQUIRED_MIGRATION, counterId],
  );
  const { migrated, newest, has_row } = state.rows[0] ?? {};
  if (!migrated) {
    throw new SchemaError(
      "SCHEMA_OUTDATED",
      `migration ${REQUIRED_MIGRATION} has not run (newest applied: ${newest ?? "none"}); run the migrate job`,
    );
  }
  if (!has_row) {
    throw new SchemaError(
      "COUNTER_ROW_MISSING",
      `counter row missing: no row '${counterId}' in visit_counts (restore it: infra/restore.sh)`,
    );
  }
}
