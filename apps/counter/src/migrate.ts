// The migrate job (the `migrate` compose service, infra/rollout.sh before new replicas):
// applies apps/counter/migrations as the owner role, then exits 0, or 1 with the reason.
//   node dist/migrate.js         (the production image; src/migrate.ts with tsx)
import { loadConfig, loadConfigOrExit, logLevel, positiveDuration } from "@app/config";
import { createLogger } from "@app/server";
import { z } from "zod";
import { counterId, postgresConnection } from "./config.ts";
import { migrate } from "./migrations.ts";

const migrateConfigSchema = z.object({
  LOG_LEVEL: logLevel,
  // The row the first migration creates.
  COUNTER_ID: counterId,
  // As the owner of the schema, not the counter's runtime role.
  ...postgresConnection("counter_owner"),
  /** The longest a statement waits for a lock that visits hold before the run is retried. */
  MIGRATION_LOCK_TIMEOUT_MS: positiveDuration("milliseconds", 2_000),
  MIGRATION_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(10),
});

const config = loadConfigOrExit(() => loadConfig("migrate", migrateConfigSchema));
const logger = createLogger({ name: "migrate", level: config.LOG_LEVEL });

try {
  const applied = await migrate({
    connection: {
      host: config.POSTGRES_HOST,
      port: config.POSTGRES_PORT,
      user: config.POSTGRES_USER,
      password: config.POSTGRES_PASSWORD,
      database: config.POSTGRES_DB,
      connectionTimeoutMillis: 10_000,
    },
    counterId: config.COUNTER_ID,
    lockTimeoutMs: config.MIGRATION_LOCK_TIMEOUT_MS,
    attempts: config.MIGRATION_ATTEMPTS,
    logger,
  });
  logger.info(
    { applied },
    applied.length ? `migrate: applied ${applied.join(", ")}` : "migrate: nothing to migrate",
  );
} catch (error) {
  // The transaction was rolled back: the schema is as it was before this run, but for a
  // migration that runs outside it (pgm.noTransaction(), for CREATE INDEX CONCURRENTLY)
  // and those before it, which commit on their own: pgmigrations lists what holds.
  logger.error({ err: error }, `migrate: failed, rolled back: ${(error as Error).message}`);
  process.exitCode = 1;
}
