import type { RequestHandler } from "express";
import { Histogram } from "prom-client";

// Every metric of the process lives in prom-client's default registry: an app's own
// metrics (`new Counter(...)` with the classes index.ts re-exports) land there too, so
// one `/metrics` serves them all. Apps import prom-client through this kit only, so
// there is exactly one copy of it, hence one registry.

/**
 * How long requests take, by method, route *pattern* and status. The route is Express'
 * pattern (`/visits`, never `/visits?x=1` or an id): a label value per raw URL would
 * grow without bound, each one a time series held in memory here and in Prometheus.
 */
export const httpRequestDuration = new Histogram({
  name: "http_request_duration_seconds",
  help: "Time from a request's arrival to its last byte sent, by method, route pattern and status code.",
  labelNames: ["method", "route", "status_code"] as const,
  // From a cache hit (about a millisecond) to the counter's PostgreSQL deadline (1 s)
  // and beyond; the p99 alerts (infra/monitoring/rules) sit on these bounds.
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
});

/** The label for requests that matched no route (404s, bodies refused before routing). */
export const UNMATCHED_ROUTE = "unmatched";

/** Times every request into `http_request_duration_seconds`; createApp's first middleware. */
export const measureRequests: RequestHandler = (req, res, next) => {
  const end = httpRequestDuration.startTimer();
  res.once("finish", () => {
    // Set by the router once a route matched, and kept through its error handlers.
    const route = req.route as { path?: unknown } | undefined;
    end({
      method: req.method,
      route: typeof route?.path === "string" ? req.baseUrl + route.path : UNMATCHED_ROUTE,
      status_code: String(res.statusCode),
    });
  });
  next();
};
