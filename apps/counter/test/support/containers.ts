import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "@app/test-support";
import { GenericContainer, type StartedTestContainer, Wait } from "testcontainers";

const run = promisify(execFile);

// Same variables as compose: stand-in images here, official ones elsewhere.
const POSTGRES_IMAGE = process.env.POSTGRES_IMAGE ?? "postgres:17";
const REDIS_IMAGE = process.env.REDIS_IMAGE ?? "redis:8";

export const POSTGRES_CREDENTIALS = {
  user: "counter",
  password: "test-password",
  database: "counter",
};

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
const POSTGRES_READY = ["pg_isready", "-h", "127.0.0.1", "-U", "counter", "-d", "counter"];

export async function startPostgres(): Promise<StoreContainer> {
  const port = await freePort();
  const container = await new GenericContainer(POSTGRES_IMAGE)
    .withEnvironment({
      POSTGRES_USER: POSTGRES_CREDENTIALS.user,
      POSTGRES_PASSWORD: POSTGRES_CREDENTIALS.password,
      POSTGRES_DB: POSTGRES_CREDENTIALS.database,
    })
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
  return new StoreContainer(container, port, POSTGRES_READY);
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
