import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import type { Logger } from "@app/server";
import { runner } from "node-pg-migrate";
import pg from "pg";

/** apps/counter/migrations, from src/ (tsx, tests) and dist/ (the image) alike. */
export const MIGRATIONS_DIR = fileURLToPath(new URL("../migrations", import.meta.url));

export interface MigrateOptions {
  /** As the owner role (counter_owner): the runtime role may not change the schema. */
  connection: Omit<pg.ClientConfig, "options">;
  /** The counter whose row the baseline creates in a new database (COUNTER_ID). */
  counterId: string;
  /** The longest a migration's statement waits for a table lock before it gives up (ms). */
  lockTimeoutMs: number;
  /** Tries in all when a lock was not granted in time (each a fresh, rolled-back run). */
  attempts: number;
  logger: Logger;
  dir?: string;
}

// lock_not_available: lock_timeout expired.
const LOCK_NOT_AVAILABLE = "55P03";

/**
 * Applies the migrations that have not run yet, in file order, each recorded in
 * pgmigrations, all in one transaction (a failure leaves the schema as it was; a migration
 * marked pgm.noTransaction() breaks it in two: what ran before it has committed), under
 * node-pg-migrate's advisory lock: two jobs at once apply each file once. Returns the
 * names it applied (none: the database was up to date).
 *
 * Every statement waits at most `lockTimeoutMs` for a lock: an ALTER TABLE queued behind
 * a visit's row lock would, while it waits, make every later visit queue behind it. A run
 * that times out is rolled back and tried again after a pause, so the visits pass first.
 */
export async function migrate(options: MigrateOptions): Promise<string[]> {
  try {
    return await migrateWithRetries(options);
  } finally {
    await protectRecord(options.connection).catch((error: unknown) =>
      options.logger.error(
        { err: error },
        "migrate: could not revoke the counter's writes on pgmigrations",
      ),
    );
  }
}

/**
 * node-pg-migrate creates pgmigrations before its transaction begins, so roles.sql's
 * default privileges give the runtime role DML on it at once, and a baseline that rolls
 * back (it revokes them) would leave them. Revoked here, after every run, on the
 * owner's own connection: the counter may read the record, never write it.
 */
async function protectRecord(connection: MigrateOptions["connection"]): Promise<void> {
  const client = new pg.Client({ ...connection, application_name: "migrate" });
  await client.connect();
  try {
    await client.query(`DO $$ BEGIN
      IF to_regclass('pgmigrations') IS NOT NULL THEN
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON pgmigrations FROM counter;
      END IF;
    END $$`);
  } finally {
    await client.end();
  }
}

async function migrateWithRetries(options: MigrateOptions): Promise<string[]> {
  const { logger } = options;
  for (let attempt = 1; ; attempt++) {
    try {
      const applied = await runner({
        databaseUrl: {
          ...options.connection,
          application_name: "migrate",
          // Session settings: the lock deadline; a job killed mid-statement (Ctrl-C in a
          // rollout) has its statement cancelled and its locks released within a second,
          // not when the statement would have ended; the id the baseline's row gets.
          options: [
            `-c lock_timeout=${options.lockTimeoutMs}`,
            "-c client_connection_check_interval=1000",
            `-c counter.id=${options.counterId}`,
          ].join(" "),
        },
        dir: options.dir ?? MIGRATIONS_DIR,
        migrationsTable: "pgmigrations",
        direction: "up",
        singleTransaction: true,
        // A second job waits for the first (bounded by lock_timeout, like any lock), then
        // finds nothing left to do.
        advisoryLockMode: "wait",
        checkOrder: true,
        logger: {
          debug: (message: string) => logger.debug(message),
          info: (message: string) => logger.info(message),
          warn: (message: string) => logger.warn(message),
          error: (message: string) => logger.error(message),
        },
      });
      return applied.map((migration) => migration.name);
    } catch (error) {
      if (errorCode(error) !== LOCK_NOT_AVAILABLE || attempt >= options.attempts) throw error;
      const pauseMs = Math.min(5_000, 250 * 2 ** (attempt - 1));
      logger.warn(
        { attempt, pauseMs },
        `migrate: a lock was not granted within ${options.lockTimeoutMs} ms; trying again`,
      );
      await sleep(pauseMs);
    }
  }
}

/** The SQLSTATE of an error or of one it wraps. */
function errorCode(error: unknown): string | undefined {
  for (let cause = error; cause instanceof Error; cause = cause.cause) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === "string") return code;
  }
  return undefined;
}
