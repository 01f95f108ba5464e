/** Milliseconds on one monotonic clock: visitors, faults and checks must all use this one. */
export const now = (): number => performance.now();

/** One HTTP request of a visit. */
export interface Attempt {
  /** Base URL it was sent to (a counter replica, or Nginx). */
  target: string;
  start: number;
  end: number;
  /** HTTP status, or 0 when no answer came (refused, reset, timeout). */
  status: number;
  /** The visit's number: only a 200 with a number counts as acknowledged. */
  count?: number;
  /** `Idempotent-Replayed: true`: the answer of an earlier attempt with the same key. */
  replayed?: boolean;
  error?: string;
  requestId?: string;
}

/**
 * One visit, as a client means it: attempts with the same Idempotency-Key are one
 * visit. A visit without a key is never retried (a retry could count it twice).
 */
export interface VisitRecord {
  id: number;
  key?: string;
  attempts: Attempt[];
  /**
   * After the visit was acknowledged, the client sent it once more with the same key
   * (a retry whose first answer did arrive after all): it must replay the same number.
   */
  echo?: Attempt;
}

/** The attempt that got the visit its number, if any. */
export const acknowledgement = (visit: VisitRecord): Attempt | undefined =>
  visit.attempts.find((attempt) => attempt.count !== undefined);

/** One GET of the current count. */
export interface ReadRecord {
  target: string;
  start: number;
  end: number;
  status: number;
  count?: number;
  /** `X-Cache`: whether the count came from the cache (hit) or from PostgreSQL (miss). */
  cache?: string;
  error?: string;
}

export interface History {
  visits: VisitRecord[];
  reads: ReadRecord[];
}

/** A time span on the `now()` clock, e.g. a fault. */
export interface Window {
  from: number;
  to: number;
  label?: string;
}
