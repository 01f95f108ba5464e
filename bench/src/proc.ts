import { type ChildProcess, spawn } from "node:child_process";

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Kill the command (SIGTERM) after this long. */
  timeoutMs?: number;
  /** Resolve instead of rejecting on a non-zero exit. */
  allowFailure?: boolean;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Every child still running, so a signal handler can end exactly the processes this run started. */
const children = new Set<ChildProcess>();

export class CommandError extends Error {
  readonly result: RunResult;

  constructor(command: string, result: RunResult) {
    const output = `${result.stdout}\n${result.stderr}`.trim().split("\n").slice(-40).join("\n");
    super(`${command} exited with ${result.code}:\n${output}`);
    this.name = "CommandError";
    this.result = result;
  }
}

/** Runs a command without a shell, capturing its output and wall time. */
export function run(command: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => child.kill("SIGTERM"), options.timeoutMs);
    child.on("error", (error) => {
      clearTimeout(timer);
      children.delete(child);
      reject(error);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      children.delete(child);
      const result = { code, stdout, stderr, ms: performance.now() - started };
      if (code !== 0 && !options.allowFailure) {
        reject(new CommandError([command, ...args].join(" "), result));
      } else {
        resolve(result);
      }
    });
  });
}

/** A long-running command whose output is collected until stop() (e.g. `docker events`). */
export function start(command: string, args: string[], options: RunOptions = {}) {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let stdout = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.resume();
  const closed = new Promise<void>((resolve) => {
    child.on("close", () => {
      children.delete(child);
      resolve();
    });
    child.on("error", () => {
      children.delete(child);
      resolve();
    });
  });
  return {
    async stop(): Promise<string> {
      child.kill("SIGTERM");
      await closed;
      return stdout;
    },
  };
}

/** Ends the children of this process that are still running (by their own pid). */
export function killChildren(): void {
  for (const child of children) child.kill("SIGTERM");
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
