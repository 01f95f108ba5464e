import type { Increment } from "./redis-store.ts";

/**
 * Counts a batch of visits in one go: one result per visit, in order, or undefined
 * for a visit that could not be answered (it fails alone).
 */
export type CountBatch = (
  idempotencyKeys: ReadonlyArray<string | undefined>,
) => Promise<Array<Increment | undefined>>;

/**
 * Counts concurrent visits with as few PostgreSQL transactions as possible. Every
 * increment of the row waits for the previous one's commit (row lock, then a WAL
 * flush), so one transaction per visit queues: at 50 requests in flight each waits
 * for ~50 commits. Instead, while one batch is in flight the visits that arrive wait,
 * and the next batch counts all of them at once (`+ n`), handing each its own number
 * from the range. A visit waits for about two commits at any concurrency, and numbers
 * stay unique (the row lock still orders the replicas).
 */
export class CoalescedIncrements {
  readonly #countBatch: CountBatch;
  #waiting: Array<{
    key: string | undefined;
    resolve: (counted: Increment) => void;
    reject: (error: unknown) => void;
  }> = [];
  #running = false;

  constructor(countBatch: CountBatch) {
    this.#countBatch = countBatch;
  }

  /** This visit's number (with an Idempotency-Key, the key's number if it has one). */
  next(idempotencyKey?: string): Promise<Increment> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ key: idempotencyKey, resolve, reject });
      if (!this.#running) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#running = true;
    while (this.#waiting.length > 0) {
      const batch = this.#waiting;
      this.#waiting = [];
      try {
        const results = await this.#countBatch(batch.map((visit) => visit.key));
        batch.forEach((visit, i) => {
          const counted = results[i];
          if (counted) visit.resolve(counted);
          else visit.reject(new Error("postgres: this visit's idempotency key vanished; retry"));
        });
      } catch (error) {
        // Committed or not is unknown (e.g. a timeout): nobody gets a number from it.
        for (const visit of batch) visit.reject(error);
      }
    }
    this.#running = false;
  }
}
