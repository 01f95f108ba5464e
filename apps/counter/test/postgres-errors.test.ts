import { createServer } from "node:net";
import { Writable } from "node:stream";
import { createLogger } from "@app/server";
import pg from "pg";
import request from "supertest";
import { describe, expect, it } from "vitest";
import { createCounterApp } from "../src/app.ts";
import type { CounterConfig } from "../src/config.ts";
import { postgresUnready } from "../src/metrics.ts";
import {
  classifyPostgresError,
  PERMANENT_CLASSES,
  PostgresHealth,
  TRANSIENT_CLASS,
} from "../src/postgres-errors.ts";
import type { PostgresStore } from "../src/postgres-store.ts";
import type { RedisCache } from "../src/redis-cache.ts";
import { VisitCounter } from "../src/visit-counter.ts";

/** What pg rejects with when the server answers an ErrorResponse: a DatabaseError. */
function databaseError(code: string, message: string): pg.DatabaseError {
  const error = new pg.DatabaseError(message, message.length, "error");
  error.code = code;
  error.severity = "FATAL";
  return error;
}

/** An error as a schema check throws it (the SHARED CONTRACT of issue 32, docs/DECISIONS.md). */
const schemaError = (code: string) => Object.assign(new Error(`schema: ${code}`), { code });

/** The error pg's Client gives for `host`:`port`, a real one (Node's own system error). */
async function connectError(host: string, port: number): Promise<Error> {
  const client = new pg.Client({ host, port, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
  } catch (error) {
    return error as Error;
  } finally {
    await client.end().catch(() => {});
  }
  throw new Error(`connected to ${host}:${port}`);
}

/** A port nobody listens on: taken, then given back. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("classifyPostgresError", () => {
  it.each([
    ["28P01", 'password authentication failed for user "counter"', "database login refused"],
    ["28000", 'role "counter" does not exist', "database login refused"],
    ["3D000", 'database "counter" does not exist', "database missing"],
    ["42P01", 'relation "visit_counts" does not exist', "schema missing"],
    ["42883", "function count_visits(text) does not exist", "schema missing"],
    ["P0002", "counter row missing: default", "counter row missing"],
    ["42501", "permission denied for sequence t_id_seq", "database permission denied"],
  ])("SQLSTATE %s (%s) is permanent: %s", (code, message, reason) => {
    expect(classifyPostgresError(databaseError(code, message))).toEqual({
      reason,
      permanent: true,
    });
  });

  it.each([
    ["SCHEMA_MISSING", "schema missing"],
    ["SCHEMA_OUTDATED", "schema older than this build needs"],
    ["COUNTER_ROW_MISSING", "counter row missing"],
  ])("the schema check's %s is permanent: %s", (code, reason) => {
    expect(classifyPostgresError(schemaError(code))).toEqual({ reason, permanent: true });
  });

  it("a refused connection (nobody listening) is transient", async () => {
    const error = await connectError("127.0.0.1", await closedPort());
    expect((error as { code?: string }).code).toBe("ECONNREFUSED");
    expect(classifyPostgresError(error)).toEqual({ reason: TRANSIENT_CLASS, permanent: false });
  });

  it("a host whose name does not resolve is transient (Docker's DNS drops a stopped container)", async () => {
    // .invalid never resolves (RFC 6761); without a resolver at all it is EAI_AGAIN.
    const error = await connectError("no-such-host.invalid", 5432);
    expect(["ENOTFOUND", "EAI_AGAIN"]).toContain((error as { code?: string }).code);
    expect(classifyPostgresError(error)).toEqual({ reason: TRANSIENT_CLASS, permanent: false });
  });

  it.each([
    ["57P01", "terminating connection due to administrator command"],
    ["57014", "canceling statement due to statement timeout"],
    ["53300", "sorry, too many clients already"],
  ])("SQLSTATE %s is transient", (code, message) => {
    expect(classifyPostgresError(databaseError(code, message)).permanent).toBe(false);
  });

  it("pg's own deadline and anything without a code are transient", () => {
    expect(classifyPostgresError(new Error("Query read timeout")).permanent).toBe(false);
    expect(classifyPostgresError(undefined).permanent).toBe(false);
    expect(classifyPostgresError("a string").permanent).toBe(false);
  });
});

/** A logger whose lines the test reads. */
function capturedLogger() {
  const lines: Array<{ level: number; msg: string; reason?: string; err?: { message: string } }> =
    [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  return { logger: createLogger({ name: "test", level: "info", destination }), lines };
}

const gauge = async (reason: string) =>
  (await postgresUnready.get()).values.find((entry) => entry.labels.reason === reason)?.value;

describe("PostgresHealth", () => {
  it("logs the detail once per change of state, not once per failure", async () => {
    const { logger, lines } = capturedLogger();
    const health = new PostgresHealth(logger);
    const refused = databaseError("28P01", 'password authentication failed for user "counter"');
    for (let i = 0; i < 5; i++) health.failed(refused);
    await expect(health.check(() => Promise.reject(refused))).rejects.toMatchObject({
      message: 'database login refused: password authentication failed for user "counter"',
      permanent: true,
    });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 50,
      reason: "database login refused",
      err: { message: 'password authentication failed for user "counter"' },
    });
    expect(await gauge("database login refused")).toBe(1);

    // A visit's success does not clear a permanent state: only the readiness check does.
    health.succeeded();
    expect(health.state).toEqual({ reason: "database login refused", permanent: true });
    await health.check(async () => {});
    expect(health.state).toBeUndefined();
    expect(lines.map((line) => line.msg)).toEqual([
      "postgres: database login refused",
      "postgres: serving again",
    ]);
    for (const reason of PERMANENT_CLASSES) expect(await gauge(reason), reason).toBe(0);
  });

  it("a transient failure is a warning, cleared by the next success of a visit", async () => {
    const { logger, lines } = capturedLogger();
    const health = new PostgresHealth(logger);
    const error = await connectError("127.0.0.1", await closedPort());
    health.failed(error);
    health.failed(error);
    expect(health.state).toEqual({ reason: TRANSIENT_CLASS, permanent: false });
    health.succeeded();
    expect(health.state).toBeUndefined();
    expect(lines.map((line) => [line.level, line.msg])).toEqual([
      [40, "postgres: PostgreSQL did not answer"],
      [30, "postgres: serving again"],
    ]);
    for (const reason of PERMANENT_CLASSES) expect(await gauge(reason), reason).toBe(0);
  });
});

describe("a visit's 503", () => {
  /** The real VisitCounter over a PostgreSQL that fails every statement with `error`. */
  function appFailingWith(error: unknown) {
    const { logger } = capturedLogger();
    const failing = async () => {
      throw error;
    };
    const counter = new VisitCounter({
      config: { COUNTER_ID: "default", POSTGRES_TIMEOUT_MS: 1_000 } as CounterConfig,
      postgres: { countBatch: failing, read: failing } as unknown as PostgresStore,
      cache: { get: async () => null, store: async () => {} } as unknown as RedisCache,
      logger,
    });
    const readiness = { postgres: async () => {}, redis: async () => {} };
    return { app: createCounterApp({ counter, logger, readiness }), counter };
  }

  it("names the class only: a refused login is not 'did not answer', and no role or host leaks", async () => {
    const { app, counter } = appFailingWith(
      databaseError("28P01", 'password authentication failed for user "counter"'),
    );
    for (const res of [await request(app).post("/visits"), await request(app).get("/visits")]) {
      expect(res.status).toBe(503);
      expect(res.body).toEqual({ error: "Visit counter unavailable: database login refused" });
    }
    expect(counter.health.state).toEqual({ reason: "database login refused", permanent: true });
  });

  it("says PostgreSQL did not answer when it did not", async () => {
    const { app } = appFailingWith(await connectError("127.0.0.1", await closedPort()));
    const res = await request(app).post("/visits");
    expect(res.status).toBe(503);
    expect(res.body).toEqual({ error: "Visit counter unavailable: PostgreSQL did not answer" });
  });

  it("names a missing schema as such", async () => {
    const { app } = appFailingWith(
      databaseError("42P01", 'relation "visit_counts" does not exist'),
    );
    const res = await request(app).post("/visits");
    expect(res.body).toEqual({ error: "Visit counter unavailable: schema missing" });
  });
});
