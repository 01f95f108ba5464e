import { createLogger } from "@app/server";
import request from "supertest";
import { describe, expect, it } from "vitest";
import { createCounterApp } from "../src/app.ts";
import { CounterUnavailableError, type Reading, type Visit } from "../src/visit-counter.ts";

// The HTTP layer alone, over a stand-in counter: routes, status codes, bodies.
function appWith(counter: {
  increment: (idempotencyKey?: string) => Promise<Visit>;
  current: () => Promise<Reading>;
}) {
  return createCounterApp({
    counter,
    logger: createLogger({ name: "test", level: "silent" }),
    readiness: { postgres: async () => {}, redis: async () => {} },
  });
}

let count = 41;
// Like the real counter: a key seen before gets its earlier number back.
const numbersByKey = new Map<string, number>();
const working = appWith({
  async increment(key) {
    const earlier = key === undefined ? undefined : numbersByKey.get(key);
    if (earlier !== undefined) return { count: earlier, replayed: true, cached: true };
    if (key !== undefined) numbersByKey.set(key, count + 1);
    return { count: ++count, replayed: false, cached: true };
  },
  current: async () => ({ count, source: "cache", stale: false }),
});
const unavailable = async (): Promise<never> => {
  throw new CounterUnavailableError("Visit counter unavailable: PostgreSQL did not answer", null);
};
const broken = appWith({ increment: unavailable, current: unavailable });

describe("counter HTTP API", () => {
  it("POST /visits answers this visit's number, which PostgreSQL handed out", async () => {
    const res = await request(working).post("/visits");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ count: 42 });
    expect(res.headers["x-counter-source"]).toBe("postgres");
  });

  it("GET /visits reads without counting and says where the count came from", async () => {
    const res = await request(working).get("/visits");
    expect(res.body).toEqual({ count: 42 });
    expect(res.headers["x-counter-source"]).toBe("cache");
    expect(res.headers["x-counter-stale"]).toBeUndefined();
  });

  it("POST /visits says when the cache could not be told about the visit", async () => {
    const cacheDown = appWith({
      increment: async () => ({ count: 8, replayed: false, cached: false }),
      current: unavailable,
    });
    const res = await request(cacheDown).post("/visits");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ count: 8 });
    expect(res.headers["x-counter-cache"]).toBe("missed");
    expect((await request(working).get("/visits")).headers["x-counter-cache"]).toBeUndefined();
  });

  it("GET /visits marks a count that may be behind", async () => {
    const degraded = appWith({
      increment: unavailable,
      current: async () => ({ count: 7, source: "cache", stale: true }),
    });
    const res = await request(degraded).get("/visits");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ count: 7 });
    expect(res.headers["x-counter-stale"]).toBe("true");
  });

  it("GET / is the tutorial's page and counts a visit", async () => {
    const res = await request(working).get("/");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toMatch(/text\/html/);
    expect(res.text).toContain("Hello Docker Universe!");
    expect(res.text).toContain("This page has been visited 43 times.");
  });

  it("answers 503 with a JSON error when the count cannot be had", async () => {
    for (const call of [
      request(broken).post("/visits"),
      request(broken).get("/visits"),
      request(broken).get("/"),
    ]) {
      const res = await call;
      expect(res.status).toBe(503);
      expect(res.body).toEqual({
        error: "Visit counter unavailable: PostgreSQL did not answer",
      });
    }
  });

  it.each(["put", "delete", "patch"] as const)("%s /visits is a JSON 405", async (method) => {
    const res = await request(working)[method]("/visits");
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe("GET, HEAD, POST");
  });

  it("answers malformed JSON with a JSON 400", async () => {
    const res = await request(working)
      .post("/visits")
      .set("Content-Type", "application/json")
      .send("{oops");
    expect(res.status).toBe(400);
    expect(res.body.error).toEqual(expect.any(String));
  });

  it("POST /visits with an Idempotency-Key: a retry gets the same number, marked as replayed", async () => {
    const first = await request(working).post("/visits").set("Idempotency-Key", "visit-1");
    expect(first.headers["idempotent-replayed"]).toBeUndefined();
    const retry = await request(working).post("/visits").set("Idempotency-Key", "visit-1");
    expect(retry.status).toBe(200);
    expect(retry.body).toEqual(first.body);
    expect(retry.headers["idempotent-replayed"]).toBe("true");
  });

  it("refuses a malformed Idempotency-Key with a JSON 400, without counting", async () => {
    const before = count;
    for (const key of ["", "has space", "x".repeat(129), "semi;colon"]) {
      const res = await request(working).post("/visits").set("Idempotency-Key", key);
      expect(res.status, JSON.stringify(key)).toBe(400);
      expect(res.body.error).toMatch(/Idempotency-Key/);
    }
    expect(count).toBe(before);
  });
});
