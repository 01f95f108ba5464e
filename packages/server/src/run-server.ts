import { once } from "node:events";
import { createServer, type Server } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import type { Express } from "express";
import type { Logger } from "pino";
import { startAdminServer } from "./admin-server.ts";
import { createGracefulShutdown, type ShutdownHook } from "./graceful-shutdown.ts";
import { checkReadiness, type ReadinessOptions } from "./readiness.ts";

export interface RunServerOptions {
  app: Express;
  port: number;
  host?: string;
  /** Where `/metrics`, `/readyz` and `/healthz` are served (startAdminServer); none: no admin port. */
  metricsPort?: number;
  /**
   * What must pass before `port` opens (and what the admin port's `/readyz` reports):
   * the app's own readiness, the same checks as createApp's `/readyz`. None: at once.
   */
  readiness?: ReadinessOptions;
  logger: Logger;
  shutdownTimeoutMs: number;
  /** How long to keep serving after SIGTERM before closing the listener (see createGracefulShutdown). */
  shutdownDelayMs?: number;
  /** Run in order after the server has drained, e.g. flush caches, then close pools. */
  onShutdown?: ShutdownHook[];
}

// The wait between two readiness checks before the port opens: soon after a dependency
// comes up, without a query storm while it stays down.
const FIRST_RETRY_MS = 100;
const LAST_RETRY_MS = 2_000;

/**
 * Serves the admin port at once, then opens the app's port only after the first
 * readiness check that passes, and keeps it open from then on; exits cleanly on SIGTERM
 * (`docker stop`) or SIGINT (Ctrl-C): drain, run the hooks, exit with code 0. Resolves
 * once the app's port is open.
 *
 * Why the port waits: Nginx sends requests to a new container as soon as Docker's DNS
 * lists it, and open-source Nginx has no active health checks. A replica that cannot
 * serve yet refuses the connection instead, which Nginx retries on another replica
 * (`proxy_next_upstream error`, also for a POST: a refused request was never sent),
 * so it costs no client anything. Why it stays open afterwards: a replica that lost its
 * database answers 503 like every other one; closing would make Nginx try them all
 * for each request, and retrying 503s would multiply an outage (docs/DECISIONS.md).
 */
export async function runServer(options: RunServerOptions): Promise<Server> {
  const {
    app,
    port,
    host = "0.0.0.0",
    metricsPort,
    readiness = { checks: {} },
    logger,
    shutdownTimeoutMs,
    shutdownDelayMs = 0,
    onShutdown = [],
  } = options;
  // Nginx passes on up to 16 KB of request headers (large_client_header_buffers) and
  // adds its own X-Forwarded-* ones; Node's default limit is 16 KB in all, and a
  // request over it gets an empty 431. Twice that leaves the limit to Nginx.
  const server = createServer({ maxHeaderSize: 32 * 1024 }, app);
  // Keep idle connections open longer than Nginx does (its upstream keepalive_timeout,
  // see the frontend's site template), so Nginx never reuses a socket Node just closed.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  // Up first, and still scraped while the app drains; closed after the last hook.
  const admin =
    metricsPort === undefined
      ? undefined
      : await startAdminServer({
          port: metricsPort,
          host,
          logger,
          readiness,
          serving: () => server.listening,
        });

  const shutdown = createGracefulShutdown({
    server,
    logger,
    timeoutMs: shutdownTimeoutMs,
    delayMs: shutdownDelayMs,
    hooks: admin ? [...onShutdown, () => closeServer(admin)] : onShutdown,
  });
  // Before the wait: a replica stopped while it is not ready yet exits at once.
  const stopped = new AbortController();
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () => {
      stopped.abort();
      void shutdown(signal).then((code) => process.exit(code));
    });
  }

  await untilReady(readiness, logger, stopped.signal);
  if (stopped.signal.aborted) return server;
  // Rejects on "error" (the port taken) as well.
  await once(server.listen(port, host), "listening");
  logger.info({ port, host }, "ready: listening");
  return server;
}

/** Resolves once every required check passes (or `signal` aborts), checking with backoff. */
async function untilReady(
  readiness: ReadinessOptions,
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  let waitMs = FIRST_RETRY_MS;
  let logged = false;
  while (!signal.aborted) {
    const report = await checkReadiness(readiness);
    if (report.ready) return;
    if (!logged) {
      // Once: the app logs each change of its dependencies' state itself.
      logger.info({ checks: report.checks }, "not ready yet: the app's port stays closed");
      logged = true;
    }
    await sleep(waitMs, undefined, { signal }).catch(() => {});
    waitMs = Math.min(2 * waitMs, LAST_RETRY_MS);
  }
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
