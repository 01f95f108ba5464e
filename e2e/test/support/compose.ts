import { execFile } from "node:child_process";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { eventually, machineEnvironment } from "@app/test-support";
import { expect } from "vitest";

const run = promisify(execFile);
export const REPO_ROOT = resolve(import.meta.dirname, "../../..");

// Never copied into a test's working copy: installs, build output, local settings,
// secrets and backups (a test that needs secrets makes fresh ones in its copy).
const SKIP =
  /(^|\/)(node_modules|dist|\.turbo|\.git|test-results)(\/|$)|(^|\/)\.env$|^\/secrets\/.*\.(txt|pem)$|^\/backups(\/|$)/;

/**
 * A throwaway copy of the repository in a new temporary directory (without SKIP's
 * files), for a test that edits sources or creates secrets. The caller removes it.
 */
export async function copyRepository(prefix: string): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), `${prefix}-`));
  await cp(REPO_ROOT, directory, {
    recursive: true,
    filter: (source) => !SKIP.test(source.slice(REPO_ROOT.length)),
  });
  return directory;
}

export interface ComposeOptions {
  /** Compose files, relative to the project directory, in merge order. */
  files: string[];
  /** Extra variables for interpolation (ports, image tags...). */
  env?: Record<string, string>;
  /**
   * Run from a throwaway copy of the repository, so a test may edit sources
   * (hot reload) or create secrets without touching the working tree.
   */
  copyRepo?: boolean;
}

/**
 * One Compose project with a unique name: its containers, networks, volumes and
 * images never collide with a developer's stack or a parallel run.
 */
export class ComposeProject {
  readonly name = `e2e-${process.pid}-${Date.now().toString(36)}`;
  directory = REPO_ROOT;
  readonly #options: ComposeOptions;

  constructor(options: ComposeOptions) {
    this.#options = options;
  }

  async prepare(): Promise<this> {
    if (this.#options.copyRepo) this.directory = await copyRepository(this.name);
    return this;
  }

  /**
   * `docker compose …` for this project; rejects with the command's output on failure.
   * `env` adds to (and overrides) the project's variables for this one command, e.g. to
   * recreate a service with another setting.
   */
  async compose(
    args: string[],
    { env = {}, timeoutMs = 600_000 }: { env?: Record<string, string>; timeoutMs?: number } = {},
  ): Promise<string> {
    const files = this.#options.files.flatMap((file) => ["-f", file]);
    try {
      const { stdout } = await run("docker", ["compose", "-p", this.name, ...files, ...args], {
        cwd: this.directory,
        env: this.commandEnvironment(env),
        timeout: timeoutMs,
        maxBuffer: 64 * 1024 * 1024,
      });
      return stdout;
    } catch (error) {
      const { stdout = "", stderr = "" } = error as { stdout?: string; stderr?: string };
      throw new Error(`docker compose ${args.join(" ")} failed:\n${stdout}\n${stderr}`);
    }
  }

  /**
   * The variables every command of this project gets (random ports, this run's image
   * tag, the options' env), for a script that runs `docker compose` itself.
   */
  environment(): Record<string, string> {
    return {
      // Every published port random (0): no clash with anything on the host. The
      // production frontend must know its public HTTPS port (PUBLIC_HTTPS_PORT, for
      // the redirect from HTTP), which cannot be 0: a test that starts it passes fixed
      // free ports (support/production.ts) in `env`.
      FRONTEND_PORT: "0",
      FRONTEND_HTTPS_PORT: "0",
      BACKEND_PORT: "0",
      BACKEND_DEBUG_PORT: "0",
      COUNTER_PORT: "0",
      COUNTER_DEBUG_PORT: "0",
      // Images of this run get their own tag, removed again by destroy().
      IMAGE_TAG: this.name,
      ...this.#options.env,
    };
  }

  /**
   * The whole environment of a command of this project: the machine's variables only, not
   * what the contributor exported (machineEnvironment), then environment(), then `extra`.
   * Run from the repository itself, Compose is told not to read the contributor's .env; a
   * copy (copyRepo) holds no .env but the one its test writes.
   */
  commandEnvironment(extra: Record<string, string> = {}): Record<string, string> {
    return {
      ...machineEnvironment(),
      ...(this.directory === REPO_ROOT ? { COMPOSE_DISABLE_ENV_FILE: "true" } : {}),
      ...this.environment(),
      ...extra,
    };
  }

  /**
   * A script of infra/ run as a user runs it: plain `docker compose` inside, which finds
   * this project through COMPOSE_PROJECT_NAME and COMPOSE_FILE. Resolves with its exit
   * code and output, also when it fails.
   */
  async script(
    path: string,
    args: string[] = [],
    env: Record<string, string> = {},
  ): Promise<{ code: number; stdout: string; stderr: string; seconds: number }> {
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    try {
      const { stdout, stderr } = await run("bash", [path, ...args], {
        cwd: this.directory,
        env: this.commandEnvironment({
          ...env,
          COMPOSE_PROJECT_NAME: this.name,
          COMPOSE_FILE: this.#options.files.join(":"),
        }),
        timeout: 600_000,
        maxBuffer: 64 * 1024 * 1024,
      });
      return { code: 0, stdout, stderr, seconds: seconds() };
    } catch (error) {
      const {
        code = 1,
        stdout = "",
        stderr = "",
      } = error as {
        code?: number;
        stdout?: string;
        stderr?: string;
      };
      return { code, stdout, stderr, seconds: seconds() };
    }
  }

  /**
   * A shell command line as a user types it in the project directory (a README's), with
   * plain `docker compose` finding this project through COMPOSE_PROJECT_NAME and
   * COMPOSE_FILE. Resolves with its standard output; rejects with both outputs on failure.
   */
  async shell(command: string): Promise<string> {
    try {
      const { stdout } = await run("bash", ["-o", "pipefail", "-c", command], {
        cwd: this.directory,
        env: this.commandEnvironment({
          COMPOSE_PROJECT_NAME: this.name,
          COMPOSE_FILE: this.#options.files.join(":"),
        }),
        timeout: 600_000,
        maxBuffer: 64 * 1024 * 1024,
      });
      return stdout;
    } catch (error) {
      const { stdout = "", stderr = "" } = error as { stdout?: string; stderr?: string };
      throw new Error(`${command} failed:\n${stdout}\n${stderr}`);
    }
  }

  /** `up --build --wait`; on failure the error carries the services' last log lines. */
  async up(extra: string[] = []): Promise<void> {
    try {
      await this.compose(["up", "--build", "--wait", "--wait-timeout", "180", ...extra]);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n--- last logs ---\n${await this.logs()}`);
    }
  }

  /** The host address a service's container port is published on. */
  async url(service: string, containerPort: number): Promise<string> {
    const published = (await this.compose(["port", service, String(containerPort)])).trim();
    const port = published.split(":").pop();
    return `http://127.0.0.1:${port}`;
  }

  /** Removes everything the project created, also when a test failed half-way. */
  async destroy(): Promise<void> {
    try {
      // Only the images built for this run (tagged with its name), never the base images.
      const images = (await this.compose(["config", "--images"]))
        .split("\n")
        .filter((image) => image.endsWith(`:${this.name}`));
      await this.compose(["down", "--volumes", "--remove-orphans", "--timeout", "5"]);
      if (images.length > 0)
        await run("docker", ["image", "rm", "--force", ...images]).catch(() => {});
    } finally {
      if (this.directory !== REPO_ROOT) await rm(this.directory, { recursive: true, force: true });
    }
  }

  /**
   * Each volume a container of the project mounts that is not one of the project's named
   * volumes, as "service:/path". Docker makes one for every VOLUME of an image that
   * nothing is mounted over, and `down` without `--volumes` leaves it behind.
   */
  async anonymousVolumes(): Promise<string[]> {
    const ids = (await this.compose(["ps", "--all", "--quiet"])).split("\n").filter(Boolean);
    if (ids.length === 0) return [];
    const { stdout } = await run("docker", ["inspect", ...ids]);
    const containers = JSON.parse(stdout) as {
      Config: { Labels: Record<string, string> };
      Mounts: { Type: string; Name?: string; Destination: string }[];
    }[];
    return containers.flatMap(({ Config, Mounts }) =>
      Mounts.filter(
        ({ Type, Name }) => Type === "volume" && !Name?.startsWith(`${this.name}_`),
      ).map(({ Destination }) => `${Config.Labels["com.docker.compose.service"]}:${Destination}`),
    );
  }

  async logs(): Promise<string> {
    return this.compose(["logs", "--no-color", "--tail", "50"]).catch((error) => String(error));
  }
}

/** What waitForBothBackendReplicas needs of a fetch: the global one, or undici's with a CA. */
export type JsonFetch = (url: string) => Promise<{ json(): Promise<unknown> }>;

/** Polls /api/data through Nginx until both backend replicas have answered. */
export async function waitForBothBackendReplicas(
  url: string,
  fetchJson: JsonFetch = fetch,
): Promise<void> {
  const hosts = new Set<string>();
  await eventually(async () => {
    const body = (await (await fetchJson(`${url}/api/data`)).json()) as { servedByHost: string };
    hosts.add(body.servedByHost);
    expect(hosts.size).toBe(2);
  }, 20_000);
}

/** A query's rows as `a|b` lines, run with psql (as the counter) inside the database container. */
export async function psql(stack: ComposeProject, sql: string): Promise<string[]> {
  const output = await stack.compose([
    ...["exec", "-T", "db", "psql", "--username=counter", "--dbname=counter"],
    ...["--tuples-only", "--no-align", `--command=${sql}`],
  ]);
  return output
    .trim()
    .split("\n")
    .filter((line) => line.length > 0);
}

/** The count PostgreSQL holds for the page's counter. */
export async function postgresCount(stack: ComposeProject): Promise<number> {
  return Number(await psql(stack, "SELECT count FROM visit_counts WHERE id = 'visits'"));
}

/**
 * The number PostgreSQL holds for each Idempotency-Key of the page's counter, by the key
 * the client sent: Nginx stores it as c:<address>:<key> (its default.conf.template), and
 * client keys hold no ':'.
 */
export async function durableKeys(stack: ComposeProject): Promise<Map<string, number>> {
  const rows = await psql(
    stack,
    "SELECT key, count FROM visit_requests WHERE counter_id = 'visits'",
  );
  return new Map(
    rows
      .map((row) => row.split("|") as [string, string])
      .map(([key, n]) => [key.slice(key.lastIndexOf(":") + 1), Number(n)]),
  );
}
