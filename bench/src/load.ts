import { randomUUID } from "node:crypto";
import autocannon from "autocannon";
import { type CpuReport, startCpuWatch } from "./cpu.ts";
import type { Stack } from "./stack.ts";

export interface LoadOptions {
  url: string;
  method: "GET" | "POST";
  connections: number;
  durationS: number;
  /** Seconds of unrecorded load first (JIT, DNS caches, connection pools). */
  warmupS: number;
  /** Send a fresh Idempotency-Key with every request, as the page does. */
  idempotencyKeys?: boolean;
  /** Containers whose CPU use is recorded during the measured part. */
  stack?: Stack;
}

export interface LoadResult {
  requests: number;
  reqPerSec: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** Non-2xx responses plus connection errors and timeouts. */
  errors: number;
  statusCodes: Record<string, number>;
  cpu?: CpuReport | undefined;
  /** TIME_WAIT sockets in Nginx's network namespace when the row ended. */
  nginxTimeWait?: number;
  /** Nginx's own error log lines, when the row had errors. */
  nginxErrors?: string[];
}

async function cannon(options: LoadOptions, durationS: number) {
  return autocannon({
    url: options.url,
    method: options.method,
    connections: options.connections,
    duration: durationS,
    // A request slower than this counts as an error (autocannon's "timeouts").
    timeout: 10,
    ...(options.idempotencyKeys
      ? {
          requests: [
            {
              setupRequest: (request: autocannon.Request) => ({
                ...request,
                headers: { ...request.headers, "idempotency-key": randomUUID() },
              }),
            },
          ],
        }
      : {}),
  });
}

/** One fixed-duration autocannon run: 2xx/non-2xx, latency percentiles, CPU per service. */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  if (options.warmupS > 0) await cannon(options, options.warmupS);
  const port = Number(new URL(options.url).port);
  const cpu = options.stack ? await startCpuWatch(options.stack, port) : undefined;
  const result = await cannon(options, options.durationS);
  const cpuReport = await cpu?.stop();
  const statusCodes: Record<string, number> = {};
  for (const [code, { count }] of Object.entries(result.statusCodeStats ?? {})) {
    statusCodes[code] = count ?? 0;
  }
  return {
    requests: result.requests.total,
    reqPerSec: result.requests.average,
    p50: result.latency.p50,
    p90: result.latency.p90,
    p99: result.latency.p99,
    max: result.latency.max,
    errors: result.non2xx + result.errors,
    statusCodes,
    cpu: cpuReport,
    nginxTimeWait: await options.stack?.timeWaitSockets("frontend").catch(() => Number.NaN),
  };
}
