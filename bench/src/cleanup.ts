import { killChildren } from "./proc.ts";

type Task = () => Promise<void>;

const tasks: Task[] = [];
let running: Promise<void> | undefined;

/** Registers a clean-up step; steps run last-registered first. Returns a function that unregisters it. */
export function onCleanup(task: Task): () => void {
  tasks.push(task);
  return () => {
    const index = tasks.indexOf(task);
    if (index >= 0) tasks.splice(index, 1);
  };
}

/** Runs every registered step once, whatever fails. */
export function cleanup(): Promise<void> {
  running ??= (async () => {
    for (let task = tasks.pop(); task; task = tasks.pop()) {
      try {
        await task();
      } catch (error) {
        console.error(`clean-up step failed: ${error instanceof Error ? error.message : error}`);
      }
    }
  })();
  return running;
}

/**
 * Ctrl-C, SIGTERM or SIGHUP: stop the commands this run started, remove its stacks,
 * images and copies, then exit 130. A second signal during the clean-up aborts it.
 */
export function cleanUpOnSignals(): void {
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      console.error(`\n${signal}: removing everything this run started (again to abort)…`);
      killChildren();
      void cleanup().finally(() => process.exit(130));
    });
  }
}

/** Runs `main`, always cleans up, and sets the exit code (1 on an error). */
export async function runMain(main: () => Promise<number>): Promise<void> {
  cleanUpOnSignals();
  let code = 1;
  try {
    code = await main();
  } catch (error) {
    console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  } finally {
    await cleanup();
  }
  process.exitCode = code;
}
