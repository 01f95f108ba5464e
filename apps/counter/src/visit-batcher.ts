/**
 * Counts a batch of visits in one transaction: one result per visit, in order.
 * `keys[i]` is visit i's Idempotency-Key, if any. Must settle within `timeoutMs`.
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
 * Every visit has its own deadline (`timeoutMs` after it arrived) for its whole way,
 * queue and transaction, and is answered by then, with its number or an error (a
 * promise settles once: whichever comes first wins). A batch may take as long as its
 * youngest visit has left, so one slow commit does not doom the batches after it; a
 * visit answered at its deadline whose batch commits later was counted without an
 * answer, as any visit whose answer is lost.
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
    const { promise, resolve, reject } = Promise.withResolvers<Counted>();
    const visit: Waiting<Counted> = {
      key,
      deadline: Date.now() + this.#timeoutMs,
      timer: setTimeout(() => {
        this.#queue.delete(visit); // if still queued: never sent
        reject(new Error(`postgres: not counted within ${this.#timeoutMs} ms`));
      }, this.#timeoutMs),
      resolve,
      reject,
    };
    this.#queue.add(visit);
    if (!this.#running) void this.#drain();
    return promise;
  }

  async #drain(): Promise<void> {
    this.#running = true;
    while (this.#queue.size > 0) {
      const batch = [...this.#queue];
      this.#queue.clear();
      // The youngest visit arrived last: its deadline is the batch's.
      const timeoutMs = (batch.at(-1)?.deadline ?? 0) - Date.now();
      try {
        const counted = await this.#countBatch(
          batch.map((visit) => visit.key),
          timeoutMs,
        );
        for (const [i, visit] of batch.entries()) visit.resolve(counted[i] as Counted);
      } catch (error) {
        // Committed or not is unknown (a timeout, a lost connection): nobody gets a number.
        for (const visit of batch) visit.reject(error);
      }
      for (const visit of batch) clearTimeout(visit.timer);
    }
    this.#running = false;
  }
}
