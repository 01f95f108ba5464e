import type { Logger } from "@app/server";

export interface WriteBehindOptions {
  /** The highest count that must become durable (what Redis and this instance know). */
  target: () => Promise<number>;
  /** Makes `count` durable; must be idempotent and never lower the stored value. */
  persist: (count: number) => Promise<void>;
  intervalMs: number;
  logger: Logger;
  maxBackoffMs?: number;
}

/**
 * Copies the Redis count to PostgreSQL in the background: one write per interval
 * however many visits happened (coalesced), skipped when nothing changed, and
 * retried with exponential backoff while PostgreSQL is down.
 */
export class WriteBehind {
  readonly #options: Required<WriteBehindOptions>;
  #persisted = 0;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #failures = 0;
  #stopped = true;

  constructor(options: WriteBehindOptions) {
    this.#options = { maxBackoffMs: 5_000, ...options };
  }

  /** The highest count known to be in PostgreSQL. */
  get persisted(): number {
    return this.#persisted;
  }

  /** Records a count that reached PostgreSQL by another way (the PostgreSQL path). */
  notePersisted(count: number): void {
    this.#persisted = Math.max(this.#persisted, count);
  }

  start(): void {
    this.#stopped = false;
    this.#schedule(this.#options.intervalMs);
  }

  /** Stops the loop, then makes one last attempt (graceful shutdown). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
    await this.flush();
  }

  /** Persists the current target now. Concurrent calls share one write. */
  flush(): Promise<void> {
    this.#running ??= this.#flushOnce().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #flushOnce(): Promise<void> {
    const target = await this.#options.target();
    if (target <= this.#persisted) return;
    await this.#options.persist(target);
    this.notePersisted(target);
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#tick(), delayMs);
    // The loop alone must never keep the process alive.
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    const { intervalMs, maxBackoffMs, logger } = this.#options;
    try {
      await this.flush();
      if (this.#failures > 0) logger.info({ failures: this.#failures }, "write-behind: caught up");
      this.#failures = 0;
      this.#schedule(intervalMs);
    } catch (error) {
      this.#failures += 1;
      const delay = Math.min(intervalMs * 2 ** this.#failures, maxBackoffMs);
      if (this.#failures === 1)
        logger.warn({ err: error }, "write-behind: PostgreSQL unavailable, retrying");
      this.#schedule(delay);
    }
  }
}
