import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { sleep } from "./proc.ts";
import type { Stack } from "./stack.ts";

const SOURCE = "apps/backend/src/app.ts";
const MESSAGE_LINE = /export const MESSAGE = "[^"]*";/;

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
 * The development loop: change the backend's MESSAGE in the stack's (bind-mounted,
 * throwaway) source, then poll GET /api/data through Nginx every 50 ms until the new
 * message is served. Returns the milliseconds from the write to that response, per try.
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
