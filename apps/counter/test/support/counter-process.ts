import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { resolve } from "node:path";
import { counterEnv, type StoreContainer } from "./containers.ts";

const APP_DIRECTORY = resolve(import.meta.dirname, "../..");

export interface ReplicaOptions {
  postgres: StoreContainer;
  redis: StoreContainer;
  id: string;
  port: number;
  /** More variables for the app (CACHE_TTL_SECONDS …). */
  env?: Record<string, string>;
}

/**
 * A counter replica as a real process (`node src/main.ts`, as in the dev image), so a
 * test can SIGKILL it between two steps or watch its exit code. Restarts reuse its port:
 * clients find the replacement where the killed one was.
 */
export class CounterProcess {
  readonly url: string;
  readonly #options: ReplicaOptions;
  #child: ChildProcess | undefined;
  /** The last lines it logged, for a failing test's message. */
  readonly output: string[] = [];

  constructor(options: ReplicaOptions) {
    this.#options = options;
    this.url = `http://127.0.0.1:${options.port}`;
  }

  static async start(options: ReplicaOptions): Promise<CounterProcess> {
    return new CounterProcess(options).start();
  }

  async start(): Promise<this> {
    const { postgres, redis, id, port, env = {} } = this.#options;
    const child = spawn(process.execPath, ["--conditions=@app/source", "src/main.ts"], {
      cwd: APP_DIRECTORY,
      env: {
        PATH: process.env.PATH,
        NODE_ENV: "test",
        LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "warn",
        PORT: String(port),
        SHUTDOWN_TIMEOUT_MS: "3000",
        ...counterEnv({ postgres, redis, id }),
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding("utf8");
      stream?.on("data", (chunk: string) => {
        this.output.push(...chunk.trimEnd().split("\n"));
        this.output.splice(0, Math.max(0, this.output.length - 200));
      });
    }
    this.#child = child;
    await this.#waitUntilHealthy();
    return this;
  }

  /** Sends `signal` and resolves with the exit code (null after a signal it did not handle). */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<number | null> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null)
      return child?.exitCode ?? null;
    const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
    child.kill(signal);
    const [code] = await exited;
    return code;
  }

  async #waitUntilHealthy(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#child?.exitCode !== null && this.#child?.exitCode !== undefined) {
        throw new Error(`counter exited ${this.#child.exitCode}:\n${this.output.join("\n")}`);
      }
      const healthy = await fetch(`${this.url}/healthz`).then(
        (res) => res.ok,
        () => false,
      );
      if (healthy) return;
      if (Date.now() > deadline) throw new Error(`counter not healthy:\n${this.output.join("\n")}`);
      await new Promise((done) => setTimeout(done, 50));
    }
  }
}
