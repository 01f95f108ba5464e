import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { pino } from "pino";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, httpRequestDuration, startAdminServer, UNMATCHED_ROUTE } from "../src/index.ts";

const logger = pino({ level: "silent" });

const app = createApp({
  logger,
  routes(app) {
    app.get("/items/:id", (req, res) => {
      res.json({ id: req.params.id });
    });
    app.post("/items", () => {
      throw new Error("boom");
    });
  },
});

/** The label sets recorded so far, one per series of the histogram's `_count`. */
async function recorded() {
  const { values } = await httpRequestDuration.get();
  return values
    .filter((value) => value.metricName === "http_request_duration_seconds_count")
    .map((value) => ({ ...value.labels, count: value.value }));
}

describe("http_request_duration_seconds", () => {
  it("labels a request with its route pattern, never the raw URL", async () => {
    for (const id of ["1", "2", "x%20y"]) await request(app).get(`/items/${id}?q=${id}`);
    const series = (await recorded()).filter((labels) => labels.method === "GET");
    expect(series).toContainEqual({
      method: "GET",
      route: "/items/:id",
      status_code: "200",
      count: 3,
    });
    expect(JSON.stringify(series)).not.toMatch(/\/items\/(1|2|x)/);
  });

  it("gives every unrouted request (404, any path) one label", async () => {
    await request(app).get("/no/such/path/1");
    await request(app).get("/another/2");
    expect(await recorded()).toContainEqual({
      method: "GET",
      route: UNMATCHED_ROUTE,
      status_code: "404",
      count: 2,
    });
  });

  it("records a failing route's 500 under the route", async () => {
    await request(app).post("/items").send({});
    expect(await recorded()).toContainEqual({
      method: "POST",
      route: "/items",
      status_code: "500",
      count: 1,
    });
  });

  it("is not served on the app's own port", async () => {
    const res = await request(app).get("/metrics");
    expect(res.status).toBe(404);
  });
});

describe("startAdminServer", () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = await startAdminServer({ port: 0, host: "127.0.0.1", logger });
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.close();
  });

  it("serves the request histogram and the default process and Node metrics", async () => {
    await request(app).get("/items/7");
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toMatch(
      /^http_request_duration_seconds_bucket\{le="0\.001",method="GET",route="\/items\/:id",status_code="200"\} \d+$/m,
    );
    for (const name of [
      "process_cpu_seconds_total",
      "process_resident_memory_bytes",
      "nodejs_eventloop_lag_p99_seconds",
      "nodejs_heap_size_used_bytes",
    ])
      expect(text).toMatch(new RegExp(`^${name} `, "m"));
  });

  it("answers 404 for anything but GET /metrics, /readyz and /healthz", async () => {
    expect((await fetch(`${base}/`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: "POST" })).status).toBe(404);
  });
});
