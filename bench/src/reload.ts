import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { sleep } from "./proc.ts";
import { DEV_FILES, type Stack } from "./stack.ts";

const SOURCE = "apps/backend/src/app.ts";
const MESSAGE_LINE = /export const MESSAGE = "[^"]*";/;

/** The development stack with Compose Watch (sync) instead of the source bind mounts. */
export const WATCH_FILES = [...DEV_FILES, "docker-compose.watch.yml"];

async function currentMessage(url: string): Promise<string | undefined> {
  try {
    const response = await fetch(`${url}/api/data`, { signal: AbortSignal.timeout(1_000) });
    if (!response.ok) return undefined;
    return ((await response.json()) as { message?: string }).message;
  } catch {
    return undefined;
  }
}

/**
 * The development loop: changes the backend's MESSAGE in the stack's throwaway source
 * `tries` times and polls GET /api/data through Nginx every 50 ms until each new message
 * is served. Returns the milliseconds from each write to that response. With bind mounts
 * (DEV_FILES, `docker compose up --build`) the edit is seen in the container at once and
 * tsx watch restarts the backend.
 */
export async function measureReloads(stack: Stack, url: string, tries: number): Promise<number[]> {
  const path = join(stack.directory, SOURCE);
  const original = await readFile(path, "utf8");
  if (!MESSAGE_LINE.test(original))
    throw new Error(`${SOURCE} has no line matching ${MESSAGE_LINE}: update bench/src/reload.ts`);
  const results: number[] = [];
  for (let i = 1; i <= tries; i++) {
    const message = `Hello from the bench, edit ${i} at ${Date.now()}`;
    const started = performance.now();
    await writeFile(path, original.replace(MESSAGE_LINE, `export const MESSAGE = "${message}";`));
    const deadline = started + 30_000;
    for (;;) {
      if ((await currentMessage(url)) === message) break;
      if (performance.now() > deadline) throw new Error(`edit ${i} not served within 30 s`);
      await sleep(50);
    }
    results.push(performance.now() - started);
    // Let tsx watch settle before the next edit.
    await sleep(1_500);
  }
  return results;
}

/**
 * The development loop with Compose Watch (Docker Desktop's way, WATCH_FILES): the stack
 * must be up from WATCH_FILES (no source bind mounts); `docker compose watch --no-up`
 * runs as a background child while the edits are timed, so each time includes Compose
 * noticing the save, copying the file into the container, and tsx watch's restart.
 */
export async function measureWatchReloads(
  stack: Stack,
  url: string,
  tries: number,
): Promise<number[]> {
  if (!stack.files.includes("docker-compose.watch.yml"))
    throw new Error(`measureWatchReloads needs a stack of ${WATCH_FILES.join(", ")}`);
  const watch = stack.watch(["--no-up"]);
  try {
    await watch.ready;
    return await measureReloads(stack, url, tries);
  } catch (error) {
    throw new Error(`${(error as Error).message}\n--- docker compose watch ---\n${watch.output()}`);
  } finally {
    await watch.stop();
  }
}
