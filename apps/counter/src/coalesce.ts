/**
 * Wraps a read so that concurrent callers share queries without ever getting an answer
 * older than their call: a caller that arrives while a query runs waits for the next
 * one, which starts when the running one ends and serves everyone who arrived meanwhile.
 * (Joining the running query would be cheaper, but it may have read the count before
 * a visit this caller saw acknowledged.)
 */
export function coalesce<T>(read: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | undefined;
  let next: Promise<T> | undefined;
  const start = (): Promise<T> => {
    const query: Promise<T> = read().finally(() => {
      if (running === query) running = undefined;
    });
    running = query;
    return query;
  };
  return () => {
    if (running === undefined) return start();
    next ??= running
      .catch(() => {})
      .then(() => {
        next = undefined;
        return start();
      });
    return next;
  };
}
