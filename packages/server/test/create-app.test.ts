import { pino } from "pino";
import request from "supertest";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createApp, HttpError, methodNotAllowed, type ReadinessOptions } from "../src/index.ts";

const logger = pino({ level: "silent" });

function testApp(options: { readiness?: ReadinessOptions; exposeErrors?: boolean } = {}) {
  return createApp({
    logger,
    ...options,
    routes(app) {
      app
        .route("/echo")
        .post((req, res) => {
          res.json({ received: req.body });
        })
        .all(methodNotAllowed(["POST"]));
      app.get("/boom", () => {
        throw new Error("database password is hunter2");
      });
      app.get("/teapot", () => {
        throw new HttpError(418, "I am a teapot");
      });
    },
  });
}

const up = async () => "pong";
const down = async () => {
  throw new Error("connection refused");
};

describe("createApp", () => {
  it("answers liveness without checking dependencies", async () => {
    const res = await request(testApp({ readiness: { checks: { db: down } } })).get("/healthz");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: "ok" });
  });

  it("reports readiness per dependency", async () => {
    const app = testApp({ readiness: { checks: { db: up, cache: down } } });
    const res = await request(app).get("/readyz");
    expect(res.status).toBe(503);
    expect(res.body.status).toBe("not ready");
    expect(res.body.checks.db.ok).toBe(true);
    expect(res.body.checks.cache).toMatchObject({ ok: false, error: "connection refused" });
  });

  it("is ready when only an optional dependency fails, and still reports it", async () => {
    const app = testApp({ readiness: { checks: { db: up, cache: down }, optional: ["cache"] } });
    const res = await request(app).get("/readyz");
    expect(res.status).toBe(200);
    expect(res.body.status).toBe("ready");
    expect(res.body.checks.cache.ok).toBe(false);
  });

  it("times out a check that hangs", async () => {
    const hang = () => new Promise(() => {});
    const app = testApp({ readiness: { checks: { db: hang }, timeoutMs: 50 } });
    const res = await request(app).get("/readyz");
    expect(res.status).toBe(503);
    expect(res.body.checks.db.error).toMatch(/no answer within 50 ms/);
  });

  it("answers unknown routes with a JSON 404", async () => {
    const res = await request(testApp()).get("/nope");
    expect(res.status).toBe(404);
    expect(res.headers["content-type"]).toMatch(/application\/json/);
    expect(res.body).toEqual({ error: "Not found: GET /nope" });
  });

  it("answers a wrong method with 405 and Allow", async () => {
    const res = await request(testApp()).delete("/echo");
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe("POST");
    expect(res.body.error).toMatch(/DELETE not allowed/);
  });

  it("parses JSON bodies and rejects malformed ones with a JSON 400", async () => {
    const ok = await request(testApp()).post("/echo").send({ a: 1 });
    expect(ok.body).toEqual({ received: { a: 1 } });

    const bad = await request(testApp())
      .post("/echo")
      .set("Content-Type", "application/json")
      .send("{not json");
    expect(bad.status).toBe(400);
    expect(bad.body.error).toEqual(expect.any(String));
  });

  it("rejects oversized bodies with a JSON 413", async () => {
    const res = await request(testApp())
      .post("/echo")
      .send({ big: "x".repeat(100_000) });
    expect(res.status).toBe(413);
    expect(res.body.error).toEqual(expect.any(String));
  });

  it("keeps client errors' messages", async () => {
    const res = await request(testApp()).get("/teapot");
    expect(res.status).toBe(418);
    expect(res.body).toEqual({ error: "I am a teapot" });
  });

  it("never leaks details of a 500 unless told to", async () => {
    const hidden = await request(testApp()).get("/boom");
    expect(hidden.status).toBe(500);
    expect(hidden.body).toEqual({ error: "Internal Server Error" });
    expect(hidden.text).not.toContain("hunter2");

    const shown = await request(testApp({ exposeErrors: true })).get("/boom");
    expect(shown.body.detail).toBe("database password is hunter2");
    expect(shown.body.stack).toContain("create-app.test.ts");
  });

  /**
   * An app logging at `level` into `lines`, with a fast, a slow and a failing route. The
   * clock the request log reads (Date) is faked and stands still, so a request takes 0 ms
   * however busy the machine, except /slow, which moves it past the 1 s threshold.
   */
  function loggingApp(level: string, lines: string[]) {
    vi.useFakeTimers({ toFake: ["Date"] });
    return createApp({
      logger: pino({ level }, { write: (line: string) => lines.push(line) }),
      slowRequestMs: 1_000,
      routes(app) {
        app.get("/thing", (_req, res) => {
          res.json({ ok: true });
        });
        app.get("/slow", (_req, res) => {
          vi.advanceTimersByTime(1_001);
          res.json({ ok: true });
        });
        app.get("/fail", () => {
          throw new Error("boom");
        });
        app.get("/midway", (_req, res, next) => {
          res.write("partial");
          next(new Error("midway"));
        });
        app.get("/hang", () => {});
      },
    });
  }

  afterEach(() => {
    vi.useRealTimers();
  });

  it("at debug, logs one short line per request: id, method, URL, status, duration; no headers", async () => {
    const lines: string[] = [];
    const app = loggingApp("debug", lines);
    await request(app)
      .get("/thing?x=1")
      .set("X-Request-Id", "abc-123")
      .set("Authorization", "Bearer secret");
    await request(app).get("/healthz");

    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0] ?? "{}");
    expect(entry).toMatchObject({
      level: 20,
      msg: "request completed",
      req: { id: "abc-123", method: "GET", url: "/thing?x=1" },
      res: { statusCode: 200 },
      responseTime: expect.any(Number),
    });
    expect(Object.keys(entry.req)).toEqual(["id", "method", "url"]);
    expect(Object.keys(entry.res)).toEqual(["statusCode"]);
    expect(lines[0]).not.toContain("secret");
  });

  it("at info, logs only failed and slow requests (Nginx logs every request)", async () => {
    const lines: string[] = [];
    const app = loggingApp("info", lines);
    await request(app).get("/thing");
    await request(app).get("/nope");
    await request(app).get("/slow").set("X-Request-Id", "slow-1");
    await request(app).get("/fail").set("X-Request-Id", "fail-1");
    const entries = lines.map((line) => JSON.parse(line));
    expect(entries.map((entry) => [entry.level, entry.req.id, entry.res.statusCode])).toEqual([
      [40, "slow-1", 200],
      [50, "fail-1", 500],
    ]);
    // The failure's one line carries the error, stack included.
    expect(entries[1].err).toMatchObject({
      message: "boom",
      stack: expect.stringContaining("Error: boom"),
    });
  });

  it("logs an error raised after the answer began, with the error, on the request's line", async () => {
    const lines: string[] = [];
    const app = loggingApp("info", lines);
    await request(app)
      .get("/midway")
      .set("X-Request-Id", "mid-1")
      .catch(() => {});
    await vi.waitFor(() => expect(lines).toHaveLength(1));
    const entry = JSON.parse(lines[0] ?? "{}");
    expect(entry).toMatchObject({ level: 50, msg: "request failed", req: { id: "mid-1" } });
    expect(entry.err).toMatchObject({ message: "midway" });
  });

  it("logs a request abandoned before its answer as aborted, without a status it never sent", async () => {
    const lines: string[] = [];
    const app = loggingApp("info", lines);
    await expect(
      request(app).get("/hang").set("X-Request-Id", "gone-1").timeout(100),
    ).rejects.toThrow(/Timeout/);
    await vi.waitFor(() => expect(lines).toHaveLength(1));
    const entry = JSON.parse(lines[0] ?? "{}");
    expect(entry).toMatchObject({ level: 50, msg: "request aborted", req: { id: "gone-1" } });
    expect(entry.res).toBeUndefined();
  });

  it("keeps a sane X-Request-Id and replaces a bad one", async () => {
    const kept = await request(testApp()).get("/healthz").set("X-Request-Id", "abc-123");
    expect(kept.headers["x-request-id"]).toBe("abc-123");

    const replaced = await request(testApp())
      .get("/healthz")
      .set("X-Request-Id", "bad id\twith spaces");
    expect(replaced.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("does not advertise Express", async () => {
    const res = await request(testApp()).get("/healthz");
    expect(res.headers["x-powered-by"]).toBeUndefined();
  });
});
