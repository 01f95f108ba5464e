import { setTimeout as sleep } from "node:timers/promises";
import { type Dispatcher, fetch } from "undici";

/** One request of the stream and what came back. */
export interface StreamRecord {
  kind: "data" | "visit";
  start: number;
  end: number;
  /** HTTP status, or 0 when no answer came. */
  status: number;
  error?: string;
  /** GET /api/data: the message; POST /api/visits: the number. */
  message?: string;
  count?: number;
}

/**
 * A steady stream through Nginx, as plain clients make it: `clients` loops, together
 * `rate` requests a second, alternating GET /api/data and POST /api/visits, each sent
 * once (no retry, no Idempotency-Key). Every request is recorded; `stop()` waits for
 * the ones in flight.
 */
export function startStream(options: {
  url: string;
  dispatcher?: Dispatcher;
  clients: number;
  rate: number;
  timeoutMs?: number;
}): { stop: () => Promise<StreamRecord[]> } {
  const { url, dispatcher, clients, rate, timeoutMs = 10_000 } = options;
  const records: StreamRecord[] = [];
  let stopped = false;
  let issued = 0;
  const t0 = performance.now();

  const one = async (kind: StreamRecord["kind"]) => {
    const start = performance.now();
    try {
      const response = await fetch(kind === "data" ? `${url}/api/data` : `${url}/api/visits`, {
        method: kind === "data" ? "GET" : "POST",
        signal: AbortSignal.timeout(timeoutMs),
        ...(dispatcher ? { dispatcher } : {}),
      });
      const body = (await response.json().catch(() => ({}))) as {
        message?: string;
        count?: number;
      };
      records.push({
        kind,
        start,
        end: performance.now(),
        status: response.status,
        ...(typeof body.message === "string" ? { message: body.message } : {}),
        ...(typeof body.count === "number" ? { count: body.count } : {}),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code;
      records.push({
        kind,
        start,
        end: performance.now(),
        status: 0,
        error: cause ?? (error instanceof Error ? error.name : String(error)),
      });
    }
  };

  const client = async () => {
    while (!stopped) {
      const i = issued++;
      const due = t0 + (i * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      if (stopped) return;
      await one(i % 2 === 0 ? "data" : "visit");
    }
  };
  const running = Array.from({ length: clients }, client);
  return {
    async stop() {
      stopped = true;
      await Promise.all(running);
      return records;
    },
  };
}

/** The requests of a stream that got no 200 (with what happened to them). */
export const failures = (records: StreamRecord[]) =>
  records.filter((r) => r.status !== 200 || (r.kind === "visit" && r.count === undefined));

/** "502×3, ECONNRESET×1": a short account of failures. */
export function describeFailures(records: StreamRecord[]): string {
  const reasons = new Map<string, number>();
  for (const r of failures(records)) {
    const reason = r.status ? String(r.status) : (r.error ?? "error");
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  }
  return [...reasons].map(([reason, n]) => `${reason}×${n}`).join(", ") || "none";
}
