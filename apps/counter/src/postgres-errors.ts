import type { Logger } from "@app/server";
import * as metrics from "./metrics.ts";

/**
 * What went wrong with PostgreSQL, in words a client may read: the class names the
 * failure, never its detail (a role, a host, a table). The first six cannot heal by
 * waiting: someone has to act (fix a password, restore a volume, run the migration).
 */
export const PERMANENT_CLASSES = [
  "database login refused",
  "database missing",
  "schema missing",
  "schema older than this build needs",
  "counter row missing",
  "database permission denied",
] as const;
/** Everything else: PostgreSQL is down, restarting, unreachable or slow; waited out. */
export const TRANSIENT_CLASS = "PostgreSQL did not answer";

export type PostgresErrorClass = (typeof PERMANENT_CLASSES)[number] | typeof TRANSIENT_CLASS;

export interface Classified {
  reason: PostgresErrorClass;
  permanent: boolean;
}

// By `code`: a SQLSTATE on pg's DatabaseError (the server's ErrorResponse), or one of the
// strings PostgresStore.checkSchema() throws (its contract, docs/DECISIONS.md).
const PERMANENT_BY_CODE: Record<string, (typeof PERMANENT_CLASSES)[number]> = {
  "28P01": "database login refused", // invalid_password
  "28000": "database login refused", // invalid_authorization_specification (no such role, pg_hba)
  "3D000": "database missing", // invalid_catalog_name
  "42P01": "schema missing", // undefined_table
  "42883": "schema missing", // undefined_function
  SCHEMA_MISSING: "schema missing",
  SCHEMA_OUTDATED: "schema older than this build needs",
  P0002: "counter row missing", // no_data_found, raised by count_visits
  COUNTER_ROW_MISSING: "counter row missing",
  // insufficient_privilege: a grant the runtime role lacks (a migration's new table or
  // sequence outside infra/postgres/roles.sql's default privileges); only a grant heals it.
  "42501": "database permission denied",
};

/**
 * The class of a PostgreSQL failure. Anything not known to be permanent is transient:
 * Node's network errors (ECONNREFUSED while it restarts; ENOTFOUND and EAI_AGAIN, which
 * Docker's DNS answers for a stopped container's name), pg's deadlines and 57P0x (the
 * server shutting down) all heal once PostgreSQL is back.
 */
export function classifyPostgresError(error: unknown): Classified {
  const code = (error as { code?: unknown } | null)?.code;
  const reason = typeof code === "string" ? PERMANENT_BY_CODE[code] : undefined;
  return reason ? { reason, permanent: true } : { reason: TRANSIENT_CLASS, permanent: false };
}

// Present at 0 from the start, so an alert's expression has a series to look at.
for (const reason of PERMANENT_CLASSES) metrics.postgresUnready.set({ reason }, 0);

/**
 * A classified failure, for a readiness check: the message is the class and the
 * server's own words (for the operator, never for a client), `permanent` tells
 * @app/server's readiness that waiting will not help.
 */
export class PostgresUnavailableError extends Error {
  readonly reason: PostgresErrorClass;
  readonly permanent: boolean;

  constructor(error: unknown) {
    const { reason, permanent } = classifyPostgresError(error);
    super(`${reason}: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
    });
    this.name = "PostgresUnavailableError";
    this.reason = reason;
    this.permanent = permanent;
  }
}

/**
 * The replica's view of PostgreSQL: logs the detailed reason once per change of state
 * (not once per request: an outage under load would be thousands of identical lines)
 * and keeps the `counter_postgres_unready` gauge on the permanent reason, if any.
 *
 * The readiness check decides: its success clears any state. A visit can only report a
 * failure (a table dropped under a running replica is seen by visits first), and its
 * success clears a transient state only: a visit can succeed on a schema older than
 * this build needs, which is still not fine.
 */
export class PostgresHealth {
  readonly #logger: Logger;
  #state: Classified | undefined;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /** The state now: undefined when the last outcome was a success. */
  get state(): Classified | undefined {
    return this.#state;
  }

  /** Runs a readiness check; a failure is rethrown classified (PostgresUnavailableError). */
  async check(operation: () => Promise<unknown>): Promise<void> {
    try {
      await operation();
    } catch (error) {
      throw this.failed(error);
    }
    this.#change(undefined);
  }

  /** A visit (or read) succeeded. */
  succeeded(): void {
    if (this.#state && !this.#state.permanent) this.#change(undefined);
  }

  /** Records a failure; returns it classified. */
  failed(error: unknown): PostgresUnavailableError {
    const classified = new PostgresUnavailableError(error);
    this.#change(classified, error);
    return classified;
  }

  #change(next: Classified | undefined, error?: unknown): void {
    if (next?.reason === this.#state?.reason) return;
    const previous = this.#state?.reason;
    this.#state = next && { reason: next.reason, permanent: next.permanent };
    for (const reason of PERMANENT_CLASSES)
      metrics.postgresUnready.set({ reason }, next?.reason === reason ? 1 : 0);
    if (next === undefined) {
      this.#logger.info({ previous }, "postgres: serving again");
    } else if (next.permanent) {
      // An operator has to act: error level, with the server's words.
      this.#logger.error({ err: error, reason: next.reason, previous }, `postgres: ${next.reason}`);
    } else {
      this.#logger.warn({ err: error, reason: next.reason, previous }, `postgres: ${next.reason}`);
    }
  }
}
