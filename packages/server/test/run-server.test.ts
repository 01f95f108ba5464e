import { once } from "node:events";
import { type AddressInfo, createServer as createNetServer } from "node:net";
import { Writable } from "node:stream";
import express from "express";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { runServer } from "../src/index.ts";

describe("runServer", () => {
  const app = express().get("/", (_req, res) => {
    res.json({ ok: true });
  });
  const started = runServer({
    app,
    port: 0,
    host: "127.0.0.1",
    logger: pino({ level: "silent" }),
    shutdownTimeoutMs: 1_000,
  });
  afterAll(async () => {
    (await started).close();
  });

  it("accepts the 16 KB of headers Nginx lets through, plus Nginx's own", async () => {
    const server = await started;
    const { port } = server.address() as AddressInfo;
    const headers = Object.fromEntries(
      Array.from({ length: 20 }, (_, i) => [`x-big-${i}`, "a".repeat(1_000)]),
    );
    const res = await fetch(`http://127.0.0.1:${port}/`, { headers });
    // 20 KB: over Node's default limit, which would answer an empty 431.
    expect(res.status).toBe(200);
  });
});

/** A port nobody listens on: taken, then given back. */
async function freePort(): Promise<number> {
  const probe = createNetServer().listen(0, "127.0.0.1");
  await once(probe, "listening");
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** A logger whose lines resolve `logged(msg)` promises, so a test waits on events, not time. */
function watchedLogger() {
  const waiting = new Map<string, () => void>();
  const seen = new Set<string>();
  const destination = new Writable({
    write(chunk, _encoding, done) {
      const { msg } = JSON.parse(String(chunk)) as { msg: string };
      seen.add(msg);
      waiting.get(msg)?.();
      done();
    },
  });
  const logged = (msg: string) =>
    seen.has(msg) ? Promise.resolve() : new Promise<void>((resolve) => waiting.set(msg, resolve));
  return { logger: pino({ level: "info" }, destination), logged };
}

describe("runServer with readiness", () => {
  it("serves the admin port at once, opens the app's port after the first passing check, and keeps it open", async () => {
    const [port, adminPort] = [await freePort(), await freePort()];
    const { logger, logged } = watchedLogger();
    // The dependency: refusing permanently, then up, then down for a while (transient).
    let failure: Error | undefined = Object.assign(new Error("login refused"), {
      permanent: true,
    });
    const app = express().get("/", (_req, res) => {
      res.json({ ok: true });
    });
    const started = runServer({
      app,
      port,
      host: "127.0.0.1",
      metricsPort: adminPort,
      readiness: {
        checks: {
          db: async () => {
            if (failure) throw failure;
          },
        },
      },
      logger,
      shutdownTimeoutMs: 1_000,
    });
    const admin = (path: string) => fetch(`http://127.0.0.1:${adminPort}${path}`);
    const api = () => fetch(`http://127.0.0.1:${port}/`);

    await logged("not ready yet: the app's port stays closed");
    const notReady = await admin("/readyz");
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toMatchObject({
      status: "not ready",
      checks: { db: { ok: false, error: "login refused", permanent: true } },
    });
    // Waiting will not heal it: liveness fails too (Swarm's healthcheck).
    expect((await admin("/healthz")).status).toBe(503);
    await expect(api()).rejects.toMatchObject({ cause: { code: "ECONNREFUSED" } });

    failure = undefined;
    const server = await started;
    try {
      expect((await api()).status).toBe(200);
      expect((await admin("/readyz")).status).toBe(200);
      expect((await admin("/healthz")).status).toBe(200);

      // The database goes away after the start: not ready, alive, and the port stays open.
      failure = new Error("connect ECONNREFUSED");
      const down = await admin("/readyz");
      expect(down.status).toBe(503);
      expect(await down.json()).toMatchObject({
        checks: { db: { error: "connect ECONNREFUSED" } },
      });
      expect((await admin("/healthz")).status).toBe(200);
      expect((await api()).status).toBe(200);
      expect((await admin("/metrics")).status).toBe(200);
    } finally {
      server.close();
      // The admin server is closed by the shutdown hooks; here the process lives on.
    }
  });
});
