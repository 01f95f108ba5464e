/**
 * Polls until `check` passes (returns without throwing) and resolves to what it returned;
 * after `timeoutMs` rethrows its last error. The way to wait for something that happens
 * on its own time (a container's start, a log line), never a fixed sleep.
 */
export async function eventually<T>(
  check: () => Promise<T>,
  timeoutMs = 15_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  }
}
