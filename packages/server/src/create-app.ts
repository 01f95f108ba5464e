import { randomUUID } from "node:crypto";
import express, { type Express } from "express";
import type { Logger } from "pino";
import { pinoHttp, startTime } from "pino-http";
import { errorHandler, notFound } from "./errors.ts";
import { measureRequests } from "./metrics.ts";
import { type ReadinessOptions, readinessHandler } from "./readiness.ts";

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

// A request id from the proxy (Nginx sets X-Request-Id) is kept, so one id follows
// the request through every log; anything odd-looking is replaced.
const REQUEST_ID = /^[\w.-]{1,128}$/;

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
  // Behind Nginx: trust X-Forwarded-* only from loopback and private networks.
  app.set("trust proxy", "loopback, uniquelocal");

  // First, so every answer is timed, also the 404s and errors (served by startMetricsServer).
  app.use(measureRequests);
  app.use(
    pinoHttp({
      logger,
      genReqId(req, res) {
        const incoming = req.headers["x-request-id"];
        const id =
          typeof incoming === "string" && REQUEST_ID.test(incoming) ? incoming : randomUUID();
        res.setHeader("X-Request-Id", id);
        return id;
      },
      // Nginx's access log is the request log: one JSON line per request, with this
      // request id. The service adds what Nginx cannot know, so each request is logged
      // here at `debug` only, unless it failed (`error`) or was slow (`warn`).
      customLogLevel(_req, res, error) {
        if (error || res.statusCode >= 500) return "error";
        // pino-http's own record of when the request arrived.
        if (Date.now() - res[startTime] > slowRequestMs) return "warn";
        return "debug";
      },
      // Probes hit these every few seconds; logging them would drown the real traffic.
      autoLogging: { ignore: (req) => req.url === "/healthz" || req.url === "/readyz" },
      // One short line per request: the id that ties it to Nginx's log, what was asked
      // and the outcome. The default serializers add every request and response header,
      // several times the bytes, to every line.
      serializers: {
        req: (req: { id: unknown; method: string; url: string }) => ({
          id: req.id,
          method: req.method,
          url: req.url,
        }),
        res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
      },
    }),
  );

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
