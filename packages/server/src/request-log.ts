import { randomUUID } from "node:crypto";
import type { RequestHandler, Response } from "express";
import type { Logger } from "pino";

// A request id from the proxy (Nginx sets X-Request-Id) is kept, so one id follows
// the request through every log; anything odd-looking is replaced.
const REQUEST_ID = /^[\w.-]{1,128}$/;

// Probes hit these every few seconds; logging them would drown the real traffic.
const PROBES = new Set(["/healthz", "/readyz"]);

// The error behind a 500, kept for the request's log line (see errorHandler).
const failures = new WeakMap<Response, unknown>();

/** Attaches the error behind a failed response to the request's log line. */
export function logFailure(res: Response, error: unknown): void {
  failures.set(res, error);
}

/**
 * Echoes the request id and logs the request once it is answered (or abandoned).
 * Nginx's access log is the request log: one JSON line per request, with this request
 * id. The service adds what Nginx cannot know, so a request is logged at `debug`, unless
 * it failed (`error`, with its error and stack) or was slow (`warn`): at the production
 * level, `info`, the line exists only for those.
 *
 * Deliberately not pino-http: it builds two child loggers per request whether or not a
 * line is ever written (in production, almost never), which cost more than this whole
 * file does (docs/PERFORMANCE.md has the measurement).
 */
export function logRequests(logger: Logger, slowRequestMs: number): RequestHandler {
  return (req, res, next) => {
    const started = Date.now();
    const incoming = req.headers["x-request-id"];
    const id = typeof incoming === "string" && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    res.setHeader("X-Request-Id", id);
    if (PROBES.has(req.url)) {
      next();
      return;
    }
    const done = () => {
      res.off("finish", done).off("close", done);
      const responseTime = Date.now() - started;
      const err = failures.get(res);
      // Closed before the response was complete: the client (or Nginx, at its deadline)
      // went away, or the server failed mid-response.
      const aborted = !res.writableFinished;
      const failed = err !== undefined || res.statusCode >= 500 || aborted;
      const level = failed ? "error" : responseTime > slowRequestMs ? "warn" : "debug";
      if (!logger.isLevelEnabled(level)) return;
      logger[level](
        {
          req: { id, method: req.method, url: req.originalUrl },
          // No status was sent by an aborted request that never started its answer.
          ...(res.headersSent ? { res: { statusCode: res.statusCode } } : {}),
          responseTime,
          ...(err === undefined ? {} : { err }),
        },
        aborted && err === undefined
          ? "request aborted"
          : failed
            ? "request failed"
            : "request completed",
      );
    };
    res.on("finish", done).on("close", done);
    next();
  };
}
