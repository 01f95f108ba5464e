import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { onCleanup } from "./cleanup.ts";
import { type RunOptions, type RunResult, run, sleep } from "./proc.ts";

export const REPO_ROOT = resolve(import.meta.dirname, "../..");

export const PROD_FILES = ["docker-compose.yml", "docker-compose.prod.yml"];

/**
 * The production files the measurements use: production as it runs behind a load
 * balancer that terminates TLS (plain HTTP to Nginx, as the earlier measurements), when
 * the measured copy has that file; the bare production files otherwise (older commits).
 */
export function measuredProdFiles(directory: string): string[] {
  return existsSync(join(directory, "docker-compose.proxied.yml"))
    ? [...PROD_FILES, "docker-compose.proxied.yml"]
    : PROD_FILES;
}
export const DEV_FILES = ["docker-compose.yml", "docker-compose.override.yml"];

// Never copied: installs, build output, local settings and secrets (a fresh one is written).
const SKIP =
  /(^|\/)(node_modules|dist|\.turbo|\.git|test-results|coverage)(\/|$)|(^|\/)\.env(\.local)?$|^\/secrets\/.*\.txt$/;

/** A unique name for this run's Compose projects, image tags and temporary copy. */
export function runName(kind: string): string {
  return `${kind}-${process.pid}-${Date.now().toString(36)}`;
}

/**
 * A throwaway copy of the repository's working tree, or of a commit (without installs,
 * build output, .git and local secrets), with freshly generated production secrets
 * (infra/init-secrets.sh, as the README does it). Edits for the warm-rebuild and
 * hot-reload measurements happen here, never in the working tree. Removed on clean-up.
 */
export async function copyRepo(name: string, ref?: string): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), `${name}-`));
  onCleanup(() => rm(directory, { recursive: true, force: true }));
  if (ref) {
    // A committed state (`--ref HEAD`), unaffected by edits in progress in the working tree.
    const archive = join(directory, ".bench-source.tar");
    await run("git", ["archive", "--format=tar", `--output=${archive}`, ref], { cwd: REPO_ROOT });
    await run("tar", ["-xf", archive, "-C", directory]);
    await rm(archive);
  } else {
    await cp(REPO_ROOT, directory, {
      recursive: true,
      filter: (source) => !SKIP.test(source.slice(REPO_ROOT.length)),
    });
  }
  if (existsSync(join(directory, "infra/init-secrets.sh"))) {
    await run("bash", ["infra/init-secrets.sh", "localhost"], { cwd: directory });
  } else {
    // Commits from before the script needed only the database password.
    await mkdir(join(directory, "secrets"), { recursive: true });
    await writeFile(
      join(directory, "secrets/postgres_password.txt"),
      `${randomBytes(24).toString("base64url")}\n`,
      { mode: 0o644 },
    );
  }
  return directory;
}

export interface ContainerInfo {
  id: string;
  name: string;
  service: string;
  running: boolean;
  restartCount: number;
  startedAt: string;
  oomKilled: boolean;
  health: string;
  exitCode: number;
}

/**
 * One Compose project with its own name, random host ports and image tag, so it never
 * collides with a developer's stack, CI's `e2e-*` projects or another run. destroy()
 * (registered for clean-up at creation) removes its containers, volumes and images.
 */
export class Stack {
  readonly name: string;
  readonly directory: string;
  readonly files: string[];
  readonly #builtImageIds = new Set<string>();
  #destroyed = false;

  readonly #frontendPort: number;

  /** `frontendPort` 0 (default): a random one, assigned anew each time the container starts. */
  constructor(options: {
    name: string;
    directory: string;
    files: string[];
    frontendPort?: number;
  }) {
    this.name = options.name;
    this.directory = options.directory;
    this.files = options.files;
    this.#frontendPort = options.frontendPort ?? 0;
    onCleanup(() => this.destroy());
  }

  get env(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      // Random host ports (0): no clash with anything else on the machine.
      FRONTEND_PORT: String(this.#frontendPort),
      BACKEND_PORT: "0",
      BACKEND_DEBUG_PORT: "0",
      COUNTER_PORT: "0",
      COUNTER_DEBUG_PORT: "0",
      // This run's images get their own tag, removed again by destroy().
      IMAGE_TAG: this.name,
      // Load from one address: the rate limits would answer most of it with 429.
      RATE_LIMIT: "off",
      // Production behind a load balancer (measuredProdFiles) names it; nothing here
      // sends X-Forwarded-For, so the address does not matter.
      TRUSTED_PROXIES: "127.0.0.1",
    };
  }

  /** `docker compose -p NAME -f … ARGS` in the project directory. */
  compose(args: string[], options: RunOptions = {}): Promise<RunResult> {
    const files = this.files.flatMap((file) => ["-f", file]);
    return run("docker", ["compose", "-p", this.name, ...files, ...args], {
      cwd: this.directory,
      env: this.env,
      timeoutMs: 600_000,
      ...options,
    });
  }

  /**
   * `docker compose -p NAME -f … watch ARGS` as a background child (Compose Watch, e.g.
   * `--no-up` against this running stack). `ready` resolves once Compose prints "Watch
   * enabled"; stop() ends it (SIGTERM), as does clean-up. Output is kept for errors.
   */
  watch(args: string[] = []): {
    ready: Promise<void>;
    output: () => string;
    stop: () => Promise<void>;
  } {
    const files = this.files.flatMap((file) => ["-f", file]);
    const child = spawn("docker", ["compose", "-p", this.name, ...files, "watch", ...args], {
      cwd: this.directory,
      env: this.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`watch not enabled in 60 s:\n${output}`)),
        60_000,
      );
      const collect = (chunk: string) => {
        output += chunk;
        if (/Watch enabled/i.test(output)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.setEncoding("utf8").on("data", collect);
      child.stderr.setEncoding("utf8").on("data", collect);
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`docker compose watch exited (${child.exitCode}):\n${output}`));
      });
    });
    ready.catch(() => {});
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    };
    const unregister = onCleanup(stop);
    return {
      ready,
      output: () => output,
      stop: async () => {
        unregister();
        await stop();
      },
    };
  }

  /** `docker compose build` with plain progress output (to see which steps were CACHED). */
  async build(extra: string[] = []): Promise<RunResult> {
    const result = await this.compose(["--progress", "plain", "build", ...extra]);
    await this.#rememberImages();
    return result;
  }

  async up(extra: string[] = []): Promise<RunResult> {
    const result = await this.compose([
      "up",
      "--detach",
      "--wait",
      "--wait-timeout",
      "180",
      ...extra,
    ]);
    await this.#rememberImages();
    return result;
  }

  /** The frontend's published address on the loopback interface. */
  async url(): Promise<string> {
    const { stdout } = await this.compose(["port", "frontend", "8080"]);
    const port = stdout.trim().split("\n")[0]?.split(":").pop();
    if (!port) throw new Error(`no published port for frontend:8080 (${stdout})`);
    return `http://127.0.0.1:${port}`;
  }

  /** The images this project's services use, by service. */
  async images(): Promise<Map<string, string>> {
    const { stdout } = await this.compose(["config", "--format", "json"]);
    const config = JSON.parse(stdout) as { services: Record<string, { image?: string }> };
    const images = new Map<string, string>();
    for (const [service, definition] of Object.entries(config.services)) {
      if (definition.image) images.set(service, definition.image);
    }
    return images;
  }

  /** The images this project builds (their name ends with this run's tag). */
  async builtImages(): Promise<Map<string, string>> {
    const built = new Map<string, string>();
    for (const [service, image] of await this.images()) {
      if (image.endsWith(`:${this.name}`)) built.set(service, image);
    }
    return built;
  }

  async containerIds(service?: string): Promise<string[]> {
    const { stdout } = await this.compose([
      "ps",
      "--all",
      "--quiet",
      ...(service ? [service] : []),
    ]);
    return stdout.split("\n").filter(Boolean);
  }

  async containers(): Promise<ContainerInfo[]> {
    const ids = await this.containerIds();
    if (ids.length === 0) return [];
    const { stdout } = await run("docker", ["inspect", ...ids]);
    const raw = JSON.parse(stdout) as {
      Id: string;
      Name: string;
      RestartCount: number;
      Config: { Labels: Record<string, string> };
      State: {
        Running: boolean;
        StartedAt: string;
        OOMKilled: boolean;
        ExitCode: number;
        Health?: { Status: string };
      };
    }[];
    return raw.map((c) => ({
      id: c.Id,
      name: c.Name.replace(/^\//, ""),
      service: c.Config.Labels["com.docker.compose.service"] ?? "?",
      running: c.State.Running,
      restartCount: c.RestartCount,
      startedAt: c.State.StartedAt,
      oomKilled: c.State.OOMKilled,
      health: c.State.Health?.Status ?? "none",
      exitCode: c.State.ExitCode,
    }));
  }

  /** Waits until every container of `service` is running and healthy. */
  async waitHealthy(service: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const containers = (await this.containers()).filter((c) => c.service === service);
      if (containers.length > 0 && containers.every((c) => c.running && c.health === "healthy"))
        return;
      if (Date.now() > deadline) throw new Error(`${service} not healthy within ${timeoutMs} ms`);
      await sleep(200);
    }
  }

  async logs(tail = 40): Promise<string> {
    const result = await this.compose(["logs", "--no-color", "--tail", String(tail)], {
      allowFailure: true,
    });
    return result.stdout;
  }

  async down(volumes: boolean): Promise<void> {
    await this.compose([
      "down",
      "--remove-orphans",
      "--timeout",
      "5",
      ...(volumes ? ["--volumes"] : []),
    ]);
  }

  /** Removes the project's containers, networks, volumes and the images this run built. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    await this.#rememberImages().catch(() => {});
    // A stack paused while another one is measured (pnpm bench --baseline).
    await this.compose(["unpause"], { allowFailure: true }).catch(() => {});
    await this.down(true).catch((error: unknown) => {
      console.error(`compose down of ${this.name} failed: ${error}`);
    });
    const images = [...(await this.builtImages().catch(() => new Map<string, string>())).values()];
    if (images.length > 0) await run("docker", ["image", "rm", ...images], { allowFailure: true });
    // Images this run built and then replaced (the warm rebuild): remove them only if
    // nothing else names them now (an identical build elsewhere may share the id).
    const dangling = await run(
      "docker",
      [
        "images",
        "--quiet",
        "--filter",
        "dangling=true",
        "--filter",
        `label=com.docker.compose.project=${this.name}`,
      ],
      { allowFailure: true },
    );
    for (const id of new Set([
      ...this.#builtImageIds,
      ...dangling.stdout.split("\n").filter(Boolean),
    ])) {
      const inspect = await run(
        "docker",
        ["image", "inspect", "--format", "{{len .RepoTags}}", id],
        {
          allowFailure: true,
        },
      );
      if (inspect.code === 0 && inspect.stdout.trim() === "0")
        await run("docker", ["image", "rm", id], { allowFailure: true });
    }
  }

  async #rememberImages(): Promise<void> {
    for (const image of (await this.builtImages()).values()) {
      const result = await run("docker", ["image", "inspect", "--format", "{{.Id}}", image], {
        allowFailure: true,
      });
      if (result.code === 0) this.#builtImageIds.add(result.stdout.trim());
    }
  }
}
