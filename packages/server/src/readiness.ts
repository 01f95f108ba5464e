import { setTimeout as delay } from "node:timers/promises";
import type { RequestHandler } from "express";

/**
 * Resolves when the dependency answers, rejects (or times out) when it does not. An
 * error with `permanent: true` says waiting will not heal it (a refused login, a missing
 * schema): `GET /healthz` on the admin port then fails too (run-server.ts).
 */
export type ReadinessCheck = () => Promise<unknown>;

export interface ReadinessOptions {
  checks: Record<string, ReadinessCheck>;
  /** Checks that are reported but do not decide readiness (a cache the app can do without). */
  optional?: string[];
  timeoutMs?: number;
}

export interface CheckResult {
  ok: boolean;
  latencyMs: number;
  error?: string;
  /** The error said it will not heal by waiting. */
  permanent?: true;
}

export interface ReadinessReport {
  /** Every required check passed. */
  ready: boolean;
  /** A required check failed with an error that will not heal by waiting. */
  permanent: boolean;
  checks: Record<string, CheckResult>;
}

/** Runs every check at once, each within `timeoutMs`. */
export async function checkReadiness(options: ReadinessOptions): Promise<ReadinessReport> {
  const { checks, optional = [], timeoutMs = 1_000 } = options;
  const entries = await Promise.all(
    Object.entries(checks).map(
      async ([name, check]) => [name, await runCheck(check, timeoutMs)] as const,
    ),
  );
  const required = entries.filter(([name]) => !optional.includes(name));
  return {
    ready: required.every(([, result]) => result.ok),
    permanent: required.some(([, result]) => result.permanent === true),
    checks: Object.fromEntries(entries),
  };
}

/** `GET /readyz`: 200 when the app can serve, 503 otherwise; the body reports each dependency. */
export function readinessHandler(options: ReadinessOptions): RequestHandler {
  return async (_req, res) => {
    const { ready, checks } = await checkReadiness(options);
    res.status(ready ? 200 : 503).json({ status: ready ? "ready" : "not ready", checks });
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
    const permanent = (error as { permanent?: unknown } | null)?.permanent === true;
    return {
      ok: false,
      latencyMs: Math.round(performance.now() - started),
      error: message,
      ...(permanent ? { permanent: true as const } : {}),
    };
  }
}
