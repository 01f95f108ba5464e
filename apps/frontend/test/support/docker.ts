// The docker CLI as the frontend tests drive it, and the removal of everything they create.
import { execFile as execFileCallback } from "node:child_process";
import { rm } from "node:fs/promises";
import { promisify } from "node:util";

const execFile = promisify(execFileCallback);

/** Part of every name this process gives a container, network or image. */
export const RUN_ID = `${process.pid}-${Date.now().toString(36)}`;

/** Runs the docker CLI; rejects (failing the test) on a non-zero exit. */
export async function docker(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return execFile("docker", args, { timeout: 180_000, maxBuffer: 32 * 1024 * 1024 });
}

/**
 * Runs the docker CLI for a command that is meant to fail: returns its exit code and
 * output instead of rejecting. Still rejects when docker itself could not run (missing
 * binary, timeout), so the test fails rather than passing on a broken setup.
 */
export async function dockerFails(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    return { code: 0, ...(await docker(...args)) };
  } catch (error) {
    const failure = error as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof failure.code !== "number") throw error;
    return { code: failure.code, stdout: failure.stdout ?? "", stderr: failure.stderr ?? "" };
  }
}

// Everything this process created, removed by removeCreated() (in afterAll, which also
// runs after failures). Names are recorded before they are created, so a half-started
// container is removed too.
const created = { containers: [] as string[], networks: [] as string[], dirs: [] as string[] };

/** A container name with this run's id, to be removed by removeCreated(). */
export function containerName(label: string): string {
  const name = `app-frontend-test-${label}-${RUN_ID}`;
  created.containers.push(name);
  return name;
}

/** A temporary directory to be removed by removeCreated(). */
export function removeLater(dir: string): void {
  created.dirs.push(dir);
}

/** Removes what this process created; every step tolerates what never got created. */
export async function removeCreated(): Promise<void> {
  const { containers, networks, dirs } = created;
  if (containers.length > 0) await docker("rm", "--force", ...containers).catch(() => {});
  for (const name of networks) await docker("network", "rm", name).catch(() => {});
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  created.containers = [];
  created.networks = [];
  created.dirs = [];
}

export async function createNetwork(label: string): Promise<string> {
  const name = `app-frontend-test-${label}-${RUN_ID}`;
  created.networks.push(name);
  await docker("network", "create", name);
  return name;
}

/** The container's address on the given network ("" when it has none). */
export async function ipOf(container: string, network: string): Promise<string> {
  const { stdout } = await docker(
    "inspect",
    "--format",
    `{{with index .NetworkSettings.Networks "${network}"}}{{.IPAddress}}{{end}}`,
    container,
  );
  return stdout.trim();
}

/** The host port Docker published for the container's port (on 127.0.0.1). */
export async function publishedPort(container: string, port: string): Promise<string> {
  const { stdout } = await docker("port", container, port);
  const published = /:(\d+)\s*$/m.exec(stdout)?.[1];
  if (!published) throw new Error(`no published port for ${container}: ${stdout}`);
  return published;
}

export async function health(container: string): Promise<{ state?: string; health?: string }> {
  const { stdout } = await docker(
    "inspect",
    "--format",
    "{{.State.Status}} {{.State.Health.Status}}",
    container,
  );
  const [state, health] = stdout.trim().split(" ");
  return { state, health };
}

export interface FrontendOptions {
  network: string;
  env?: Record<string, string>;
  extraArgs?: string[];
  /** `--publish` values; 8080 must be among them. */
  publish?: string[];
}

/**
 * Starts the frontend `image` on `network` with the given environment, publishes 8080 on
 * a random loopback port (or as `publish` says), waits for the image's HEALTHCHECK to
 * pass, returns the base URL (of 8080).
 */
export async function runFrontend(
  image: string,
  label: string,
  options: FrontendOptions,
): Promise<{ url: string; container: string }> {
  const container = containerName(label);
  await docker(
    "run",
    "--detach",
    "--name",
    container,
    ...["--network", options.network],
    ...Object.entries(options.env ?? {}).flatMap(([key, value]) => ["--env", `${key}=${value}`]),
    ...(options.publish ?? ["127.0.0.1::8080"]).flatMap((publish) => ["--publish", publish]),
    ...(options.extraArgs ?? []),
    image,
  );
  await waitForHealthy(container);
  return { url: `http://127.0.0.1:${await publishedPort(container, "8080/tcp")}`, container };
}

export async function waitForHealthy(container: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { state, health: status } = await health(container);
    if (status === "healthy") return;
    if (state !== "running" || Date.now() > deadline) {
      const logs = await docker("logs", container).catch((error: Error) => error);
      throw new Error(
        `${container} is ${state}/${status}; logs:\n${JSON.stringify(logs, null, 2)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
