import type { Server } from "node:http";
import type { Logger } from "pino";

/** Work to do after the last request has been answered (flush buffers, close pools). */
export type ShutdownHook = () => Promise<void> | void;

export interface GracefulShutdownOptions {
  server: Server;
  logger: Logger;
  /** How long in-flight requests may take before their connections are cut. */
  timeoutMs: number;
  hooks?: ShutdownHook[];
}

/**
 * Returns `shutdown()`: stop accepting connections, let in-flight requests finish
 * (closing idle keep-alive sockets at once, and every socket after `timeoutMs`),
 * then run the hooks in order. Resolves to the exit code: 0, or 1 if a hook failed.
 * Calling it again returns the same promise.
 */
export function createGracefulShutdown(
  options: GracefulShutdownOptions,
): (reason: string) => Promise<number> {
  const { server, logger, timeoutMs, hooks = [] } = options;
  let running: Promise<number> | undefined;

  // Prepended: it must run before the app's own listener, which may answer at once.
  server.prependListener("request", (_req, res) => {
    // Responses sent while draining tell clients not to reuse the connection...
    if (running && !res.headersSent) res.setHeader("Connection", "close");
    // ...and a keep-alive socket that goes idle while draining is closed at once,
    // instead of holding the shutdown open until its keep-alive timeout.
    res.once("finish", () => {
      if (running) setImmediate(() => server.closeIdleConnections());
    });
  });

  return (reason) => {
    running ??= (async () => {
      logger.info({ reason, timeoutMs }, "shutting down: draining in-flight requests");
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
