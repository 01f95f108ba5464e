import { DeadlineError } from "./deadline.ts";

/**
 * Counts a batch of visits in one transaction: one result (a number) per visit, in
 * order. `keys[i]` is visit i's Idempotency-Key, if any. Must settle within `timeoutMs`.
 */
export type CountBatch<Counted> = (
  keys: ReadonlyArray<string | undefined>,
  timeoutMs: number,
) => Promise<Counted[]>;

interface Waiting<Counted> {
  key: string | undefined;
  deadline: number;
  timer: NodeJS.Timeout;
  resolve: (counted: Counted) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit. Every visit is a commit on the same row, and each commit waits for the
 * one before it (row lock, then a WAL flush): one transaction per visit would queue. So
 * while one batch is in flight the visits that arrive wait, and the next batch counts
 * all of them in one transaction: a visit waits for about two commits at any load.
 *
 * Every visit has a deadline (`timeoutMs` after it arrived) that covers its whole way:
 * the wait in the queue and its batch, whose own deadline is that of its oldest visit.
 * A visit still queued at its deadline is answered with a DeadlineError and never sent.
 */
export class VisitBatcher<Counted> {
  readonly #countBatch: CountBatch<Counted>;
  readonly #timeoutMs: number;
  readonly #queue = new Set<Waiting<Counted>>();
  #running = false;

  constructor(countBatch: CountBatch<Counted>, timeoutMs: number) {
    this.#countBatch = countBatch;
    this.#timeoutMs = timeoutMs;
  }

  /** This visit's number, once the batch that counted it has committed. */
  count(key?: string): Promise<Counted> {
    return new Promise((resolve, reject) => {
      const visit: Waiting<Counted> = {
        key,
        deadline: Date.now() + this.#timeoutMs,
        timer: setTimeout(() => {
          this.#queue.delete(visit);
          reject(new DeadlineError(`postgres: not counted within ${this.#timeoutMs} ms`));
        }, this.#timeoutMs),
        resolve,
        reject,
      };
      this.#queue.add(visit);
      if (!this.#running) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#running = true;
    while (this.#queue.size > 0) {
      const batch = [...this.#queue];
      this.#queue.clear();
      for (const visit of batch) clearTimeout(visit.timer);
      const timeoutMs = Math.min(...batch.map((visit) => visit.deadline)) - Date.now();
      try {
        const counted = await this.#countBatch(
          batch.map((visit) => visit.key),
          timeoutMs,
        );
        batch.forEach((visit, i) => {
          const number = counted[i];
          if (number) visit.resolve(number);
          else visit.reject(new Error("postgres: the batch returned no number for this visit"));
        });
      } catch (error) {
        // Committed or not is unknown (a timeout, a lost connection): nobody gets a number.
        for (const visit of batch) visit.reject(error);
      }
    }
    this.#running = false;
  }
}
