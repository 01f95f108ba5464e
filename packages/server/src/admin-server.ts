import { once } from "node:events";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { Logger } from "pino";
import { collectDefaultMetrics, register } from "prom-client";
import { checkReadiness, type ReadinessOptions } from "./readiness.ts";

export interface AdminServerOptions {
  port: number;
  host?: string;
  logger: Logger;
  /** What `/readyz` and `/healthz` check; none: ready at once. */
  readiness?: ReadinessOptions;
  /** Whether the app's own port accepts requests yet (runServer opens it once ready). */
  serving?: () => boolean;
}

let defaultMetricsStarted = false;

/**
 * The admin port: `GET /metrics` (Prometheus' text format), `GET /readyz` and
 * `GET /healthz`, apart from the app's port and up from the start, before the app's
 * port opens (run-server.ts). Nginx proxies only the app's port, so none of this
 * reaches the public side, and no compose file publishes it. Also starts the default
 * process and Node metrics (CPU, memory, event loop lag, GC), once per process.
 *
 * - `/readyz`: 200 when every required check passes and the app's port is open: what
 *   Compose's healthcheck asks, so a replica counts as up only once it can serve
 *   (docs/DECISIONS.md). The body names each check's error.
 * - `/healthz`: 200 unless a required check failed with an error that waiting will not
 *   heal (a refused login, a missing schema): what Swarm's healthcheck asks, which
 *   restarts on it; an outage of the database never fails it.
 */
export async function startAdminServer(options: AdminServerOptions): Promise<Server> {
  const { port, host = "0.0.0.0", logger, readiness = { checks: {} }, serving } = options;
  if (!defaultMetricsStarted) {
    collectDefaultMetrics();
    defaultMetricsStarted = true;
  }
  const routes: Record<string, (res: ServerResponse) => Promise<void>> = {
    "/metrics": async (res) => {
      const text = await register.metrics();
      res.writeHead(200, { "Content-Type": register.contentType }).end(text);
    },
    "/readyz": async (res) => {
      const report = await checkReadiness(readiness);
      const listening = serving?.() ?? true;
      const ready = report.ready && listening;
      json(res, ready ? 200 : 503, {
        status: ready ? "ready" : "not ready",
        // Checks passed, port not open yet: the moment between the two (runServer).
        ...(report.ready && !listening ? { reason: "the app's port is not open yet" } : {}),
        checks: report.checks,
      });
    },
    "/healthz": async (res) => {
      const report = await checkReadiness(readiness);
      if (report.permanent) json(res, 503, { status: "failing", checks: report.checks });
      else json(res, 200, { status: "ok" });
    },
  };
  const server = createServer((req, res) => {
    const route = routes[(req.url ?? "").split("?")[0] ?? ""];
    if (!route || (req.method !== "GET" && req.method !== "HEAD")) {
      res
        .writeHead(404, { "Content-Type": "text/plain" })
        .end("Not found: only GET /metrics, /readyz, /healthz\n");
      return;
    }
    route(res).catch((error: unknown) => {
      logger.error({ err: error, url: req.url }, "admin: answering failed");
      if (!res.headersSent) res.writeHead(500, { "Content-Type": "text/plain" });
      res.end("failed\n");
    });
  });
  // Rejects on "error" (the port taken) as well.
  await once(server.listen(port, host), "listening");
  logger.info({ port, host }, "admin port listening: /metrics, /readyz, /healthz");
  return server;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "Content-Type": "application/json" }).end(JSON.stringify(body));
}
