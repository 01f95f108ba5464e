/**
 * Counts concurrent visits with as few PostgreSQL statements as possible. Every
 * increment of the row waits for the previous one's commit (row lock, then a WAL
 * flush), so one statement per visit queues: at 50 requests in flight each waits for
 * ~50 commits. Instead, while one statement is in flight the callers that arrive wait,
 * and the next statement counts all of them at once (`+ n`), handing each caller its
 * own number from the range it returned: count − n + 1 … count. Numbers stay unique
 * and gap-free (the row lock still orders replicas), and a visit waits for about two
 * commits at any concurrency.
 */
export class CoalescedIncrements {
  readonly #incrementBy: (n: number) => Promise<number>;
  #waiting: Array<{ resolve: (count: number) => void; reject: (error: unknown) => void }> = [];
  #running = false;

  /** `incrementBy(n)` adds n in one statement and returns the new count. */
  constructor(incrementBy: (n: number) => Promise<number>) {
    this.#incrementBy = incrementBy;
  }

  /** This caller's number. */
  next(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      if (!this.#running) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#running = true;
    while (this.#waiting.length > 0) {
      const batch = this.#waiting;
      this.#waiting = [];
      try {
        const count = await this.#incrementBy(batch.length);
        let number = count - batch.length;
        for (const caller of batch) caller.resolve(++number);
      } catch (error) {
        // Committed or not is unknown (e.g. a timeout): nobody gets a number from it.
        for (const caller of batch) caller.reject(error);
      }
    }
    this.#running = false;
  }
}
