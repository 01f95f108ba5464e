import { setTimeout as delay } from "node:timers/promises";
import type { RequestHandler } from "express";

/** Resolves when the dependency answers, rejects (or times out) when it does not. */
export type ReadinessCheck = () => Promise<unknown>;

export interface ReadinessOptions {
  checks: Record<string, ReadinessCheck>;
  /** Checks that are reported but do not decide readiness (a cache the app can do without). */
  optional?: string[];
  timeoutMs?: number;
}

interface CheckResult {
  ok: boolean;
  latencyMs: number;
  error?: string;
}

/** `GET /readyz`: 200 when the app can serve, 503 otherwise; the body reports each dependency. */
export function readinessHandler(options: ReadinessOptions): RequestHandler {
  const { checks, optional = [], timeoutMs = 1_000 } = options;
  return async (_req, res) => {
    const entries = await Promise.all(
      Object.entries(checks).map(
        async ([name, check]) => [name, await runCheck(check, timeoutMs)] as const,
      ),
    );
    const ready = entries.every(([name, result]) => result.ok || optional.includes(name));
    res
      .status(ready ? 200 : 503)
      .json({ status: ready ? "ready" : "not ready", checks: Object.fromEntries(entries) });
  };
}

async function runCheck(check: ReadinessCheck, timeoutMs: number): Promise<CheckResult> {
  const started = performance.now();
  try {
    const timeout = delay(timeoutMs, undefined, { ref: false }).then(() => {
      throw new Error(`no answer within ${timeoutMs} ms`);
    });
    await Promise.race([check(), timeout]);
    return { ok: true, latencyMs: Math.round(performance.now() - started) };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { ok: false, latencyMs: Math.round(performance.now() - started), error: message };
  }
}
