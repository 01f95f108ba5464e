import { hostname } from "node:os";
import { createLogger } from "@app/server";
import request from "supertest";
import { describe, expect, it } from "vitest";
import { createBackendApp, MESSAGE } from "../src/app.ts";

const app = createBackendApp({ logger: createLogger({ name: "test", level: "silent" }) });

describe("backend", () => {
  it("GET /data answers the message, an ISO timestamp and the host", async () => {
    const before = Date.now();
    const res = await request(app).get("/data");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toMatch(/application\/json/);
    expect(res.body).toEqual({
      message: "Hello from Backend API managed by Docker Compose!",
      timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      servedByHost: hostname(),
    });
    expect(res.body.message).toBe(MESSAGE);
    expect(Date.parse(res.body.timestamp)).toBeGreaterThanOrEqual(before - 1);
  });

  it("HEAD /data is allowed", async () => {
    const res = await request(app).head("/data");
    expect(res.status).toBe(200);
  });

  it.each(["post", "put", "delete", "patch"] as const)("%s /data is a JSON 405", async (method) => {
    const res = await request(app)[method]("/data");
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe("GET, HEAD");
    expect(res.body.error).toMatch(/not allowed/);
  });

  it("unknown routes are a JSON 404", async () => {
    const res = await request(app).get("/nope");
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: "Not found: GET /nope" });
  });

  it("has health and readiness endpoints", async () => {
    expect((await request(app).get("/healthz")).status).toBe(200);
    const ready = await request(app).get("/readyz");
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: "ready", checks: {} });
  });
});
