import { createServer, type Server } from "node:http";
import type { Express } from "express";
import type { Logger } from "pino";
import { createGracefulShutdown, type ShutdownHook } from "./graceful-shutdown.ts";
import { startMetricsServer } from "./metrics.ts";

export interface RunServerOptions {
  app: Express;
  port: number;
  host?: string;
  /** Where `GET /metrics` is served (startMetricsServer); none: no metrics server. */
  metricsPort?: number;
  logger: Logger;
  shutdownTimeoutMs: number;
  /** How long to keep serving after SIGTERM before closing the listener (see createGracefulShutdown). */
  shutdownDelayMs?: number;
  /** Run in order after the server has drained, e.g. flush caches, then close pools. */
  onShutdown?: ShutdownHook[];
}

/**
 * Listens, and exits cleanly on SIGTERM (`docker stop`) or SIGINT (Ctrl-C):
 * drain, run the hooks, exit with code 0.
 */
export async function runServer(options: RunServerOptions): Promise<Server> {
  const {
    app,
    port,
    host = "0.0.0.0",
    metricsPort,
    logger,
    shutdownTimeoutMs,
    shutdownDelayMs = 0,
    onShutdown = [],
  } = options;
  // Nginx passes on up to 16 KB of request headers (large_client_header_buffers) and
  // adds its own X-Forwarded-* ones; Node's default limit is 16 KB in all, and a
  // request over it gets an empty 431. Twice that leaves the limit to Nginx.
  const server = createServer({ maxHeaderSize: 32 * 1024 }, app).listen(port, host);
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
  });
  // Keep idle connections open longer than Nginx does (its upstream keepalive_timeout,
  // see the frontend's site template), so Nginx never reuses a socket Node just closed.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  // Still scraped while the app drains; closed after the last hook.
  const metrics =
    metricsPort === undefined
      ? undefined
      : await startMetricsServer({ port: metricsPort, host, logger });

  const shutdown = createGracefulShutdown({
    server,
    logger,
    timeoutMs: shutdownTimeoutMs,
    delayMs: shutdownDelayMs,
    hooks: metrics ? [...onShutdown, () => closeServer(metrics)] : onShutdown,
  });
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () => {
      void shutdown(signal).then((code) => process.exit(code));
    });
  }
  logger.info({ port, host }, "listening");
  return server;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
