const started = performance.now();

/** Progress on stderr, so stdout holds only the results. */
export function log(message: string): void {
  const at = ((performance.now() - started) / 1000).toFixed(1).padStart(6);
  console.error(`[${at} s] ${message}`);
}
