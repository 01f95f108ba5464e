import type { Server } from "node:http";
import type { Logger } from "pino";

/** Work to do after the last request has been answered (flush buffers, close pools). */
export type ShutdownHook = () => Promise<void> | void;

export interface GracefulShutdownOptions {
  server: Server;
  logger: Logger;
  /** How long in-flight requests may take before their connections are cut. */
  timeoutMs: number;
  /**
   * How long to keep serving after the signal, every response with `Connection: close`,
   * before the listener closes. A proxy that reuses connections (Nginx's upstream
   * keepalive) thus stops reusing this replica's connections, and has closed the idle
   * ones (its keepalive_timeout must be shorter), before new ones are refused, which it
   * retries on another replica. Without it, a request the proxy sends on an idle
   * connection at the moment this server closes it is lost.
   */
  delayMs?: number;
  hooks?: ShutdownHook[];
}

/**
 * Returns `shutdown()`: keep serving for `delayMs` (telling clients not to reuse
 * connections), then stop accepting connections, let in-flight requests finish
 * (closing idle keep-alive sockets at once, and every socket after `timeoutMs`),
 * then run the hooks in order. Resolves to the exit code: 0, or 1 if a hook failed.
 * Calling it again returns the same promise.
 */
export function createGracefulShutdown(
  options: GracefulShutdownOptions,
): (reason: string) => Promise<number> {
  const { server, logger, timeoutMs, delayMs = 0, hooks = [] } = options;
  let running: Promise<number> | undefined;
  let closing = false;

  // Prepended: it must run before the app's own listener, which may answer at once.
  server.prependListener("request", (_req, res) => {
    // Responses sent after the signal tell clients not to reuse the connection...
    if (running) res.setHeader("Connection", "close");
    // ...and once the listener is closed, a keep-alive socket that goes idle is closed
    // at once, instead of holding the shutdown open until its keep-alive timeout.
    res.once("finish", () => {
      if (closing) setImmediate(() => server.closeIdleConnections());
    });
  });

  return (reason) => {
    running ??= (async () => {
      // Never listened (stopped before it was ready, run-server.ts): nobody to warn.
      if (delayMs > 0 && server.listening) {
        logger.info({ reason, delayMs }, "shutting down: still serving, without keep-alive");
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
      logger.info({ reason, timeoutMs }, "shutting down: draining in-flight requests");
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const deadline = setTimeout(() => {
        logger.warn("drain deadline reached: closing remaining connections");
        server.closeAllConnections();
      }, timeoutMs);
      await closed;
      clearTimeout(deadline);

      let exitCode = 0;
      for (const hook of hooks) {
        try {
          await hook();
        } catch (error) {
          exitCode = 1;
          logger.error({ err: error }, "shutdown hook failed");
        }
      }
      logger.info({ exitCode }, "shutdown complete");
      return exitCode;
    })();
    return running;
  };
}
