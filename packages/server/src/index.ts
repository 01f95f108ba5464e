export type { Express } from "express";
// prom-client's metric types, for an app's own metrics: from here, so every app uses the
// kit's copy of prom-client and its registry (the one /metrics serves).
export { Counter, Gauge, Histogram } from "prom-client";
export { type AdminServerOptions, startAdminServer } from "./admin-server.ts";
export { type AppOptions, createApp } from "./create-app.ts";
export { HttpError, methodNotAllowed } from "./errors.ts";
export { createGracefulShutdown, type ShutdownHook } from "./graceful-shutdown.ts";
export { createLogger, type Logger } from "./logger.ts";
export { httpRequestDuration, UNMATCHED_ROUTE } from "./metrics.ts";
export type {
  CheckResult,
  ReadinessCheck,
  ReadinessOptions,
  ReadinessReport,
} from "./readiness.ts";
export { type RunServerOptions, runServer } from "./run-server.ts";
