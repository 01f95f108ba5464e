import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createLogger, type Logger } from "@app/server";
import { freePort } from "@app/test-support";
import { GenericContainer, type StartedTestContainer, Wait } from "testcontainers";
import { migrate } from "../../src/migrations.ts";

const run = promisify(execFile);

// Same variables as compose: stand-in images here, official ones elsewhere.
const POSTGRES_IMAGE = process.env.POSTGRES_IMAGE ?? "postgres:17";
const REDIS_IMAGE = process.env.REDIS_IMAGE ?? "redis:8";

/** The counter's runtime role, as the stack's counter logs in (DML only). */
export const POSTGRES_CREDENTIALS = {
  user: "counter",
  password: "test-password",
  database: "counter",
};
/** The schema's owner, as the migrate job logs in. */
export const OWNER_CREDENTIALS = {
  user: "counter_owner",
  password: "test-owner-password",
  database: "counter",
};
// The image's superuser, which sets up the roles (db-setup's part).
const SUPERUSER = "postgres";
const ROLES_SQL = fileURLToPath(new URL("../../../../infra/postgres/roles.sql", import.meta.url));

/** The counter's variables for these containers, as compose sets them for the stack. */
export function counterEnv(stores: {
  postgres: StoreContainer;
  redis: StoreContainer;
  id: string;
}): Record<string, string> {
  return {
    POSTGRES_HOST: stores.postgres.host,
    POSTGRES_PORT: String(stores.postgres.port),
    POSTGRES_USER: POSTGRES_CREDENTIALS.user,
    POSTGRES_PASSWORD: POSTGRES_CREDENTIALS.password,
    POSTGRES_DB: POSTGRES_CREDENTIALS.database,
    REDIS_URL: `redis://${stores.redis.host}:${stores.redis.port}`,
    COUNTER_ID: stores.id,
  };
}

/** A container published on a fixed host port, so its address survives a stop/start. */
export class StoreContainer {
  readonly container: StartedTestContainer;
  readonly port: number;
  /** A command that succeeds inside the container once the server accepts clients. */
  readonly readyCommand: string[];

  constructor(container: StartedTestContainer, port: number, readyCommand: string[]) {
    this.container = container;
    this.port = port;
    this.readyCommand = readyCommand;
  }

  get host(): string {
    return this.container.getHost();
  }

  /** `docker stop` (SIGTERM, as compose does): the data stays in the container. */
  async stop(): Promise<void> {
    await run("docker", ["stop", "--time", "10", this.container.getId()]);
  }

  /** `docker kill`: no clean shutdown. Returns once Docker has seen the container exit. */
  async kill(): Promise<void> {
    await run("docker", ["kill", this.container.getId()]);
    // `docker kill` can return before Docker has processed the exit (seconds later on a
    // loaded machine), and a `docker start` before that is a no-op on a "running" container.
    await run("docker", ["wait", this.container.getId()]);
  }

  /** `docker pause`: the server stops answering but connections stay open (unreachable). */
  async pause(): Promise<void> {
    await run("docker", ["pause", this.container.getId()]);
  }

  async unpause(): Promise<void> {
    await run("docker", ["unpause", this.container.getId()]);
  }

  async start(): Promise<void> {
    await run("docker", ["start", this.container.getId()]);
  }

  /** Waits until the server inside accepts clients again (after `start`). */
  async waitUntilReady(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await run("docker", ["exec", this.container.getId(), ...this.readyCommand]);
        return;
      } catch (error) {
        if (Date.now() > deadline) {
          throw new Error(`not ready after ${timeoutMs} ms: ${await this.describe()}`, {
            cause: error,
          });
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  }

  /** The container's state and its last log lines, for a failure message. */
  async describe(): Promise<string> {
    const id = this.container.getId();
    const { stdout: state } = await run("docker", ["inspect", "--format", "{{json .State}}", id]);
    const logs = await run("docker", ["logs", "--tail", "20", id]);
    return `state ${state.trim()}, last logs:\n${logs.stdout}${logs.stderr}`;
  }

  async exec(command: string[]): Promise<string> {
    const { output, exitCode } = await this.container.exec(command);
    if (exitCode !== 0) throw new Error(`${command.join(" ")} exited ${exitCode}: ${output}`);
    return output;
  }

  async remove(): Promise<void> {
    await this.container.stop({ remove: true, removeVolumes: true });
  }
}

// Over TCP: the image's init phase runs a socket-only server that must not count as ready.
const POSTGRES_READY = ["pg_isready", "-h", "127.0.0.1", "-U", SUPERUSER, "-d", "counter"];

/**
 * PostgreSQL as the stack sets it up: the superuser applies infra/postgres/roles.sql (as
 * db-setup does), then, unless `migrate: false`, the migrations run as the owner (as the
 * migrate job does), which creates the row of counter "visits". Other counters' rows:
 * `createCounterRow`.
 */
export async function startPostgres(options: { migrate?: boolean } = {}): Promise<StoreContainer> {
  const port = await freePort();
  const container = await new GenericContainer(POSTGRES_IMAGE)
    .withEnvironment({
      POSTGRES_USER: SUPERUSER,
      POSTGRES_PASSWORD: "test-superuser-password",
      POSTGRES_DB: POSTGRES_CREDENTIALS.database,
    })
    .withCopyFilesToContainer([{ source: ROLES_SQL, target: "/roles.sql" }])
    .withExposedPorts({ container: 5432, host: port })
    .withHealthCheck({
      test: ["CMD", ...POSTGRES_READY],
      interval: 500,
      timeout: 2_000,
      retries: 60,
    })
    .withWaitStrategy(Wait.forHealthCheck())
    .withStartupTimeout(60_000)
    .start();
  const store = new StoreContainer(container, port, POSTGRES_READY);
  await applyRoles(store);
  if (options.migrate !== false) await migrateDatabase(store);
  return store;
}

/**
 * db-setup's step: roles.sql as the superuser (over the socket, trusted inside the image),
 * for `database` (default: the counter's; another one is created first where missing).
 */
export async function applyRoles(
  postgres: StoreContainer,
  database = POSTGRES_CREDENTIALS.database,
): Promise<void> {
  if (database !== POSTGRES_CREDENTIALS.database) {
    const exists = await superuserSql(
      postgres,
      `SELECT 1 FROM pg_database WHERE datname = '${database}'`,
    );
    if (!/\(1 row\)/.test(exists)) await superuserSql(postgres, `CREATE DATABASE "${database}"`);
  }
  const { output, exitCode } = await postgres.container.exec(
    ["psql", "--no-psqlrc", "--quiet", "-U", SUPERUSER, "-d", "postgres", "-f", "/roles.sql"],
    {
      env: {
        POSTGRES_COUNTER_PASSWORD: POSTGRES_CREDENTIALS.password,
        POSTGRES_OWNER_PASSWORD: OWNER_CREDENTIALS.password,
        POSTGRES_MONITORING_PASSWORD: "test-monitoring-password",
        POSTGRES_BACKUP_PASSWORD: "test-backup-password",
        POSTGRES_DB: database,
      },
    },
  );
  if (exitCode !== 0) throw new Error(`roles.sql exited ${exitCode}: ${output}`);
}

/** The migrate job's step, programmatically: returns the migrations it applied. */
export function migrateDatabase(
  postgres: StoreContainer,
  options: {
    counterId?: string;
    dir?: string;
    lockTimeoutMs?: number;
    attempts?: number;
    database?: string;
    logger?: Logger;
  } = {},
): Promise<string[]> {
  return migrate({
    connection: {
      host: postgres.host,
      port: postgres.port,
      ...OWNER_CREDENTIALS,
      database: options.database ?? OWNER_CREDENTIALS.database,
    },
    counterId: options.counterId ?? "visits",
    lockTimeoutMs: options.lockTimeoutMs ?? 2_000,
    attempts: options.attempts ?? 3,
    logger: options.logger ?? testLogger("migrate-test"),
    ...(options.dir === undefined ? {} : { dir: options.dir }),
  });
}

export const testLogger = (name: string): Logger =>
  createLogger({ name, level: process.env.TEST_LOG_LEVEL ?? "silent" });

/** Runs SQL inside the container as the superuser (psql -c), e.g. the old schema. */
export async function superuserSql(
  postgres: StoreContainer,
  sql: string,
  database = POSTGRES_CREDENTIALS.database,
): Promise<string> {
  return postgres.exec([
    "psql",
    "--no-psqlrc",
    "-v",
    "ON_ERROR_STOP=1",
    "-U",
    SUPERUSER,
    "-d",
    database,
    "-c",
    sql,
  ]);
}

/** Redis as the stack runs it, a cache without persistence, plus a snapshot on demand. */
export class RedisContainer extends StoreContainer {
  #snapshot: string | undefined;

  /** Saves the data file now and keeps a copy of it. */
  async saveSnapshot(): Promise<void> {
    await this.exec(["redis-cli", "SAVE"]);
    this.#snapshot ??= await mkdtemp(join(tmpdir(), "redis-snapshot-"));
    await run("docker", ["cp", `${this.container.getId()}:/data/dump.rdb`, this.#snapshot]);
  }

  /** Puts the saved copy back as the data file (the container must be stopped). */
  async restoreSnapshot(): Promise<void> {
    if (!this.#snapshot) throw new Error("no snapshot saved");
    await run("docker", [
      "cp",
      join(this.#snapshot, "dump.rdb"),
      `${this.container.getId()}:/data/dump.rdb`,
    ]);
  }

  override async remove(): Promise<void> {
    if (this.#snapshot) await rm(this.#snapshot, { recursive: true, force: true });
    await super.remove();
  }
}

export async function startRedis(): Promise<RedisContainer> {
  const port = await freePort();
  const container = await new GenericContainer(REDIS_IMAGE)
    // A pure cache, as in compose: nothing written unless a test asks (SAVE), and a
    // start loads the data file if there is one (a test puts an older one back).
    .withCommand(["redis-server", "--save", "", "--appendonly", "no"])
    .withExposedPorts({ container: 6379, host: port })
    .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/))
    .withStartupTimeout(60_000)
    .start();
  // `redis-cli ping` exits 0 on an error reply too (LOADING while a file loads): require PONG.
  return new RedisContainer(container, port, ["sh", "-c", "redis-cli ping | grep -q PONG"]);
}
