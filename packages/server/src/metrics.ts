import { createServer, type Server } from "node:http";
import type { RequestHandler } from "express";
import type { Logger } from "pino";
import { collectDefaultMetrics, Histogram, register } from "prom-client";

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

let defaultMetricsStarted = false;

/**
 * Serves `GET /metrics` (Prometheus' text format) on its own port, apart from the app's:
 * Nginx proxies only the app's port, so the metrics never reach the public side, and
 * no compose file publishes this one. Also starts the default process and Node metrics
 * (CPU, memory, event loop lag, GC), once per process.
 */
export async function startMetricsServer(options: {
  port: number;
  host?: string;
  logger: Logger;
}): Promise<Server> {
  const { port, host = "0.0.0.0", logger } = options;
  if (!defaultMetricsStarted) {
    collectDefaultMetrics();
    defaultMetricsStarted = true;
  }
  const server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "Content-Type": "text/plain" }).end("Not found: only GET /metrics\n");
      return;
    }
    register.metrics().then(
      (text) => {
        res.writeHead(200, { "Content-Type": register.contentType }).end(text);
      },
      (error: unknown) => {
        logger.error({ err: error }, "metrics: collecting failed");
        res.writeHead(500, { "Content-Type": "text/plain" }).end("collecting metrics failed\n");
      },
    );
  });
  server.listen(port, host);
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
  });
  logger.info({ port, host }, "metrics listening");
  return server;
}
