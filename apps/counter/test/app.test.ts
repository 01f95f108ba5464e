import { createLogger, HttpError } from "@app/server";
import request from "supertest";
import { describe, expect, it } from "vitest";
import { createCounterApp } from "../src/app.ts";
import type { Increment } from "../src/postgres-store.ts";
import type { Reading } from "../src/visit-counter.ts";

// The HTTP layer alone, over a stand-in counter: which calls a request makes, and how
// their results become status codes, headers and bodies. (The counting itself, keys and
// replays included, is tested against real PostgreSQL in counter.integration.test.ts.)
interface Calls {
  increments: Array<string | undefined>;
  reads: number;
}

function appWith(counter: {
  increment?: (idempotencyKey?: string) => Promise<Increment>;
  current?: () => Promise<Reading>;
}) {
  const calls: Calls = { increments: [], reads: 0 };
  const unused = async (): Promise<never> => {
    throw new Error("not expected in this test");
  };
  const app = createCounterApp({
    counter: {
      increment: (key) => {
        calls.increments.push(key);
        return (counter.increment ?? unused)(key);
      },
      current: () => {
        calls.reads++;
        return (counter.current ?? unused)();
      },
    },
    logger: createLogger({ name: "test", level: "silent" }),
    readiness: { postgres: async () => {}, redis: async () => {} },
  });
  return { app, calls };
}

const unavailable = async (): Promise<never> => {
  throw new HttpError(503, "Visit counter unavailable: PostgreSQL did not answer");
};

describe("counter HTTP API", () => {
  it("POST /visits counts once and answers the visit's number", async () => {
    const { app, calls } = appWith({ increment: async () => ({ count: 42, replayed: false }) });
    const res = await request(app).post("/visits");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ count: 42 });
    expect(res.headers["idempotent-replayed"]).toBeUndefined();
    expect(calls).toEqual({ increments: [undefined], reads: 0 });
  });

  it("POST /visits passes the Idempotency-Key on, and marks a replayed answer", async () => {
    const { app, calls } = appWith({ increment: async () => ({ count: 7, replayed: true }) });
    const res = await request(app).post("/visits").set("Idempotency-Key", "visit-1");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ count: 7 });
    expect(res.headers["idempotent-replayed"]).toBe("true");
    expect(calls.increments).toEqual(["visit-1"]);
  });

  it.each([
    ["hit", 12],
    ["miss", 13],
  ] as const)("GET /visits reads without counting and says X-Cache: %s", async (cache, count) => {
    const { app, calls } = appWith({ current: async () => ({ count, cache }) });
    const res = await request(app).get("/visits");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ count });
    expect(res.headers["x-cache"]).toBe(cache);
    expect(calls).toEqual({ increments: [], reads: 1 });
  });

  it("answers 503 with a JSON error when the count cannot be had", async () => {
    const { app } = appWith({ increment: unavailable, current: unavailable });
    for (const call of [request(app).post("/visits"), request(app).get("/visits")]) {
      const res = await call;
      expect(res.status).toBe(503);
      expect(res.body).toEqual({
        error: "Visit counter unavailable: PostgreSQL did not answer",
      });
    }
  });

  it("GET / counts nothing: it is not a route of the counter", async () => {
    const { app, calls } = appWith({});
    for (const method of ["get", "head"] as const) {
      const res = await request(app)[method]("/");
      expect(res.status).toBe(404);
    }
    expect(calls).toEqual({ increments: [], reads: 0 });
  });

  it.each(["put", "delete", "patch"] as const)("%s /visits is a JSON 405", async (method) => {
    const { app, calls } = appWith({});
    const res = await request(app)[method]("/visits");
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe("GET, HEAD, POST");
    expect(res.body).toEqual({ error: expect.any(String) });
    expect(calls).toEqual({ increments: [], reads: 0 });
  });

  it("answers malformed JSON with a JSON 400, without counting", async () => {
    const { app, calls } = appWith({});
    const res = await request(app)
      .post("/visits")
      .set("Content-Type", "application/json")
      .send("{oops");
    expect(res.status).toBe(400);
    expect(res.body.error).toEqual(expect.any(String));
    expect(calls.increments).toEqual([]);
  });

  it("refuses a malformed Idempotency-Key with a JSON 400, without counting", async () => {
    const { app, calls } = appWith({ increment: async () => ({ count: 1, replayed: false }) });
    for (const key of ["", "has space", "x".repeat(129), "semi;colon"]) {
      const res = await request(app).post("/visits").set("Idempotency-Key", key);
      expect(res.status, JSON.stringify(key)).toBe(400);
      expect(res.body.error).toMatch(/Idempotency-Key/);
    }
    expect(calls.increments).toEqual([]);
  });
});
