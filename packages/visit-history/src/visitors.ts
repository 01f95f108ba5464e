import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { type Attempt, type History, now, type ReadRecord, type VisitRecord } from "./history.ts";

export interface VisitorOptions {
  /** Base URLs to spread requests over, read before every request (they may change). */
  targets: () => string[];
  /** Path of the counter: `/visits` on a replica, `/api/visits` through Nginx. */
  path?: string;
  /** Visitors running at once, each one request at a time. */
  clients?: number;
  /** Share of visits that carry an Idempotency-Key (0…1); only those are retried. */
  keyedShare?: number;
  /** Share of requests that are reads (GET) rather than visits (0…1). */
  readShare?: number;
  /** Share of acknowledged keyed visits sent once more to check the replay (0…1). */
  echoShare?: number;
  /** Retries of a keyed visit after no answer or a 502/503/504, after 50, 100, 200 … ms. */
  retries?: number;
  /** Time for one visit, its retries included. */
  timeoutMs?: number;
  /** Requests per second in all, paced; without it every visitor goes as fast as it can. */
  rate?: number;
  /** Pause of a visitor between its requests when not paced. */
  pauseMs?: number;
  /** The fetch to send with, e.g. one that trusts a test CA; the global one by default. */
  fetch?: Fetch;
}

/** What the visitors need of a fetch function (the global one, or undici's with an agent). */
export type Fetch = (
  url: string,
  init: { method: string; headers: Record<string, string>; signal: AbortSignal },
) => Promise<{
  status: number;
  text(): Promise<string>;
  headers: { get(name: string): string | null };
}>;

/** Whether another attempt may help: no answer at all, or the proxy or counter was unavailable. */
const retryable = (attempt: Attempt) =>
  (attempt.status === 0 && attempt.error !== "timeout") || [502, 503, 504].includes(attempt.status);

/** The `count` of a JSON answer; undefined for any other body (a proxy's error page). */
function countIn(text: string): unknown {
  try {
    return (JSON.parse(text) as { count?: unknown } | null)?.count;
  } catch {
    return undefined;
  }
}

async function send(
  fetch: Fetch,
  target: string,
  path: string,
  init: { method: string; key?: string | undefined },
  timeoutMs: number,
): Promise<{ attempt: Attempt; cache?: string }> {
  const start = now();
  try {
    const response = await fetch(`${target}${path}`, {
      method: init.method,
      headers: init.key === undefined ? {} : { "Idempotency-Key": init.key },
      signal: AbortSignal.timeout(Math.max(1, Math.round(timeoutMs))),
    });
    const text = await response.text();
    const base = {
      target,
      start,
      end: now(),
      status: response.status,
      requestId: response.headers.get("x-request-id") ?? undefined,
    };
    if (response.status !== 200) return { attempt: base };
    const count = countIn(text);
    if (typeof count !== "number") {
      return { attempt: { ...base, error: `no count in ${text.slice(0, 80)}` } };
    }
    return {
      attempt: {
        ...base,
        count,
        replayed: response.headers.get("idempotent-replayed") === "true",
      },
      // Where a read's count came from.
      cache: response.headers.get("x-cache") ?? undefined,
    };
  } catch (error) {
    const name = error instanceof Error ? error.name : "Error";
    const code = (error as { cause?: { code?: string } }).cause?.code;
    return {
      attempt: {
        target,
        start,
        end: now(),
        status: 0,
        error: name === "TimeoutError" ? "timeout" : (code ?? name),
      },
    };
  }
}

/**
 * Concurrent visitors against the counter, recording every attempt. Call `stop()` to
 * let each finish its current request and get the history.
 */
export function startVisitors(options: VisitorOptions): { stop: () => Promise<History> } {
  const {
    targets,
    path = "/visits",
    clients = 8,
    keyedShare = 0.5,
    readShare = 0.2,
    echoShare = 0.1,
    retries = 5,
    timeoutMs = 5_000,
    rate,
    pauseMs = 2,
    fetch: fetchWith = fetch,
  } = options;
  const history: History = { visits: [], reads: [] };
  let stopped = false;
  let issued = 0;
  let rotation = 0;
  const t0 = now();
  // Round robin, so consecutive attempts (a retry) go to another replica.
  const nextTarget = () => {
    const list = targets();
    const target = list[rotation++ % list.length];
    if (target === undefined) throw new Error("no target");
    return target;
  };

  const read = async () => {
    const { attempt: answer, cache } = await send(
      fetchWith,
      nextTarget(),
      path,
      { method: "GET" },
      timeoutMs,
    );
    const record: ReadRecord = {
      target: answer.target,
      start: answer.start,
      end: answer.end,
      status: answer.status,
      ...(answer.count === undefined ? {} : { count: answer.count }),
      ...(cache === undefined ? {} : { cache }),
      ...(answer.error === undefined ? {} : { error: answer.error }),
    };
    history.reads.push(record);
  };

  const visit = async () => {
    const keyed = Math.random() < keyedShare;
    const record: VisitRecord = {
      id: history.visits.length,
      ...(keyed ? { key: randomUUID() } : {}),
      attempts: [],
    };
    history.visits.push(record);
    const started = now();
    for (let attempt = 0; ; attempt++) {
      const left = timeoutMs - (now() - started);
      const { attempt: result } = await send(
        fetchWith,
        nextTarget(),
        path,
        { method: "POST", key: record.key },
        left,
      );
      record.attempts.push(result);
      const backoffMs = 50 * 2 ** attempt;
      const again =
        keyed &&
        result.count === undefined &&
        retryable(result) &&
        attempt < retries &&
        timeoutMs - (now() - started) > backoffMs + 50;
      if (!again) break;
      await sleep(backoffMs);
    }
    const acknowledged = record.attempts.some((attempt) => attempt.count !== undefined);
    if (keyed && acknowledged && Math.random() < echoShare) {
      const { attempt: echo } = await send(
        fetchWith,
        nextTarget(),
        path,
        { method: "POST", key: record.key },
        timeoutMs,
      );
      record.echo = echo;
    }
  };

  const visitor = async () => {
    while (!stopped) {
      if (rate !== undefined) {
        const due = t0 + (issued++ * 1000) / rate;
        if (due > now()) await sleep(due - now());
        if (stopped) return;
      }
      await (Math.random() < readShare ? read() : visit());
      if (rate === undefined && pauseMs > 0) await sleep(pauseMs);
    }
  };
  const running = Array.from({ length: clients }, visitor);
  return {
    async stop() {
      stopped = true;
      await Promise.all(running);
      return history;
    },
  };
}
