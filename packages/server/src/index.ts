export type { Express } from "express";
export { type AppOptions, createApp } from "./create-app.ts";
export { HttpError, methodNotAllowed } from "./errors.ts";
export { createGracefulShutdown, type ShutdownHook } from "./graceful-shutdown.ts";
export { createLogger, type Logger } from "./logger.ts";
export type { ReadinessCheck, ReadinessOptions } from "./readiness.ts";
export { type RunServerOptions, runServer } from "./run-server.ts";
