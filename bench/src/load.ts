import { randomUUID } from "node:crypto";
import autocannon from "autocannon";
import { type ServiceUse, startCpuWatch } from "./cpu.ts";
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
  /** The stack whose CPU use (and counter batches) is recorded during the measured part. */
  stack: Stack;
}

export interface LoadResult {
  requests: number;
  reqPerSec: number;
  p50: number;
  p99: number;
  /** Non-2xx responses plus connection errors and timeouts. */
  errors: number;
  statusCodes: Record<string, number>;
  /** By service, used during the measured part. */
  services: Map<string, ServiceUse>;
  /** Busy cores of the whole machine meanwhile (the stack, the load generator, anything else). */
  busyCores: number;
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
  const cpu = await startCpuWatch(options.stack);
  const result = await cannon(options, options.durationS);
  const statusCodes: Record<string, number> = {};
  for (const [code, { count }] of Object.entries(result.statusCodeStats ?? {})) {
    statusCodes[code] = count ?? 0;
  }
  return {
    requests: result.requests.total,
    reqPerSec: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.non2xx + result.errors,
    statusCodes,
    ...(await cpu.stop()),
  };
}
