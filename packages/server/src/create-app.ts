import express, { type Express } from "express";
import type { Logger } from "pino";
import { errorHandler, notFound } from "./errors.ts";
import { measureRequests } from "./metrics.ts";
import { type ReadinessOptions, readinessHandler } from "./readiness.ts";
import { logRequests } from "./request-log.ts";

export interface AppOptions {
  logger: Logger;
  /** Adds the app's own routes, between the health endpoints and the 404/error handlers. */
  routes: (app: Express) => void;
  /** Dependencies `GET /readyz` checks; none means "ready once listening". */
  readiness?: ReadinessOptions;
  /** Put error messages and stacks in 500 bodies. Development only. */
  exposeErrors?: boolean;
  /** Largest JSON body accepted. */
  bodyLimit?: string;
  /** A request slower than this is logged as a warning. */
  slowRequestMs?: number;
}

/** An Express app with the behaviour every service shares. */
export function createApp(options: AppOptions): Express {
  const {
    logger,
    routes,
    readiness,
    exposeErrors = false,
    bodyLimit = "16kb",
    slowRequestMs = 1_000,
  } = options;
  const app = express();

  app.disable("x-powered-by");
  // Every answer is JSON made per request: an ETag (a hash of each body, on every
  // response) would almost never match (docs/PERFORMANCE.md).
  app.set("etag", false);
  // Behind Nginx: trust X-Forwarded-* only from loopback and private networks.
  app.set("trust proxy", "loopback, uniquelocal");

  // First, so every answer is timed, also the 404s and errors (served by startAdminServer).
  app.use(measureRequests);
  app.use(logRequests(logger, slowRequestMs));

  // Liveness: the process is up and its event loop turns. No dependency is checked,
  // so an outage of the database never gets a healthy container restarted.
  app.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  app.get("/readyz", readinessHandler(readiness ?? { checks: {} }));

  app.use(express.json({ limit: bodyLimit }));
  routes(app);

  app.use(notFound);
  app.use(errorHandler(exposeErrors));
  return app;
}
