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
  /** Settled: answered with a number, or with an error at its deadline. */
  answered: boolean;
  resolve: (counted: Counted) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit. Every visit is a commit on the same row, and each commit waits for the
 * one before it (row lock, then a WAL flush): one transaction per visit would queue. So
 * while one batch is in flight the visits that arrive wait, and the next batch counts
 * all of them in one transaction: a visit waits for about two commits at any load.
 *
 * Every visit has its own deadline (`timeoutMs` after it arrived) for its whole way,
 * queue and transaction, and is answered by then: with its number, or with a
 * DeadlineError. A batch may take as long as its youngest visit has left, so one slow
 * commit does not doom the batches after it; a visit answered at its deadline whose
 * batch commits later was counted without an answer, as any visit whose answer is lost.
 */
export class VisitBatcher<Counted> {
  readonly #countBatch: CountBatch<Counted>;
  readonly #timeoutMs: number;
  /** Waiting for a batch, in arrival order. */
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
          // Still queued: never sent. In a batch: its commit is not known yet.
          this.#queue.delete(visit);
          visit.answered = true;
          reject(new DeadlineError(`postgres: not counted within ${this.#timeoutMs} ms`));
        }, this.#timeoutMs),
        answered: false,
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
      // The youngest visit arrived last: its deadline is the batch's.
      const timeoutMs = (batch.at(-1)?.deadline ?? 0) - Date.now();
      const answer = (visit: Waiting<Counted>, settle: () => void) => {
        if (visit.answered) return;
        visit.answered = true;
        clearTimeout(visit.timer);
        settle();
      };
      try {
        const counted = await this.#countBatch(
          batch.map((visit) => visit.key),
          timeoutMs,
        );
        batch.forEach((visit, i) => {
          const number = counted[i];
          answer(visit, () =>
            number === undefined
              ? visit.reject(new Error("postgres: the batch returned no number for this visit"))
              : visit.resolve(number),
          );
        });
      } catch (error) {
        // Committed or not is unknown (a timeout, a lost connection): nobody gets a number.
        for (const visit of batch) answer(visit, () => visit.reject(error));
      }
    }
    this.#running = false;
  }
}
