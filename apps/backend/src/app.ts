import { hostname } from "node:os";
import { createApp, type Express, type Logger, methodNotAllowed } from "@app/server";

export const MESSAGE = "Hello from Backend API managed by Docker Compose!";

export function createBackendApp(options: { logger: Logger; exposeErrors?: boolean }): Express {
  return createApp({
    ...options,
    routes(app) {
      app
        .route("/data")
        .get((_req, res) => {
          // servedByHost is the container's hostname: with several replicas it shows which one answered.
          res.json({
            message: MESSAGE,
            timestamp: new Date().toISOString(),
            servedByHost: hostname(),
          });
        })
        .all(methodNotAllowed(["GET", "HEAD"]));
    },
  });
}
