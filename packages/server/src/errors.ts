import type { ErrorRequestHandler, RequestHandler } from "express";
import { logFailure } from "./request-log.ts";

/** An error whose status and message are meant for the client. */
export class HttpError extends Error {
  readonly status: number;

  constructor(status: number, message: string) {
    super(message);
    this.name = "HttpError";
    this.status = status;
  }
}

/** Answers a known path called with the wrong method: 405 with an `Allow` header. */
export function methodNotAllowed(allowed: string[]): RequestHandler {
  const allow = allowed.join(", ");
  return (req, res) => {
    res
      .set("Allow", allow)
      .status(405)
      .json({ error: `Method ${req.method} not allowed; use ${allow}` });
  };
}

export const notFound: RequestHandler = (req, res) => {
  res.status(404).json({ error: `Not found: ${req.method} ${req.path}` });
};

/**
 * Last middleware: every error becomes JSON. Client errors (bad JSON, body too
 * large, HttpError) keep their status and message; anything else is a 500 whose
 * details stay in the log unless `exposeErrors` is set (development only).
 */
export function errorHandler(exposeErrors: boolean): ErrorRequestHandler {
  return (error, _req, res, next) => {
    if (res.headersSent) {
      // Too late for JSON: the request's line carries the error; Express ends the response.
      logFailure(res, error);
      next(error);
      return;
    }
    const status = statusOf(error);
    // Client errors, and server errors the app raised on purpose (HttpError 503), say what happened.
    if (status < 500 || error instanceof HttpError) {
      res.status(status).json({ error: clientMessage(error, status) });
      return;
    }
    // The request's one log line (request-log.ts) carries this error and its stack.
    logFailure(res, error);
    const body: Record<string, unknown> = { error: "Internal Server Error" };
    if (exposeErrors && error instanceof Error) {
      body.detail = error.message;
      body.stack = error.stack;
    }
    res.status(status).json(body);
  };
}

function statusOf(error: unknown): number {
  if (typeof error !== "object" || error === null) return 500;
  const { status, statusCode } = error as { status?: unknown; statusCode?: unknown };
  const candidate = typeof status === "number" ? status : statusCode;
  return typeof candidate === "number" && candidate >= 400 && candidate <= 599 ? candidate : 500;
}

function clientMessage(error: unknown, status: number): string {
  // body-parser marks its own messages as safe to show (`expose`); others are generic.
  const exposable = error instanceof HttpError || (error as { expose?: boolean }).expose === true;
  if (exposable && error instanceof Error) return error.message;
  return status === 413 ? "Request body too large" : "Bad request";
}
