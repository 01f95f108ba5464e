import { hostname } from "node:os";
import { createApp, type Express, type Logger, methodNotAllowed } from "@app/server";

export const MESSAGE = "Hello from Backend API managed by Docker Compose!";

export function createBackendApp(options: { logger: Logger; exposeErrors?: boolean }): Express {
  // The container's hostname: with several replicas it shows which one answered.
  const servedByHost = hostname();
  return createApp({
    ...options,
    routes(app) {
      app
        .route("/data")
        .get((_req, res) => {
          res.json({ message: MESSAGE, timestamp: new Date().toISOString(), servedByHost });
        })
        .all(methodNotAllowed(["GET", "HEAD"]));
    },
  });
}
