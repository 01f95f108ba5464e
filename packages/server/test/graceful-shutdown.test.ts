import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import express from "express";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createGracefulShutdown } from "../src/index.ts";

const logger = pino({ level: "silent" });

async function listen(app: express.Express) {
  const server = app.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}` };
}

/** A promise and the function that resolves it: a handler signals or waits on it. */
function gate() {
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

/** Follows a promise: `settled` turns true once it has resolved or rejected. */
function track(promise: Promise<unknown>): { settled: boolean } {
  const state = { settled: false };
  const settle = () => {
    state.settled = true;
  };
  promise.then(settle, settle);
  return state;
}

afterEach(() => {
  vi.useRealTimers();
});

describe("createGracefulShutdown", () => {
  it("drains in-flight requests, refuses new ones, then runs hooks in order", async () => {
    const events: string[] = [];
    const arrived = gate();
    const release = gate();
    const app = express();
    app.get("/slow", async (_req, res) => {
      arrived.open();
      await release.opened;
      // Recorded on the server side: the client may see the answer only after the hooks ran.
      res.on("finish", () => events.push("response"));
      res.json({ done: true });
    });
    const { server, url } = await listen(app);
    const shutdown = createGracefulShutdown({
      server,
      logger,
      timeoutMs: 5_000,
      hooks: [() => void events.push("flush"), async () => void events.push("close pools")],
    });

    const inFlight = fetch(`${url}/slow`).then((res) => res.json());
    await arrived.opened;
    const exitCode = shutdown("SIGTERM");

    await expect(fetch(`${url}/slow`)).rejects.toThrow();
    expect(events).toEqual([]);
    release.open();
    await expect(inFlight).resolves.toEqual({ done: true });
    await expect(exitCode).resolves.toBe(0);
    expect(events).toEqual(["response", "flush", "close pools"]);
    expect(shutdown("SIGINT")).toBe(exitCode);
  });

  it("answers a request that arrives while draining, with Connection: close", async () => {
    const slowArrived = gate();
    const fastArrived = gate();
    const app = express();
    app.get("/slow", async (_req, res) => {
      slowArrived.open();
      // Answered once /fast has arrived: the connection is busy until then.
      await fastArrived.opened;
      res.send("slow");
    });
    // Answers synchronously, before any later 'request' listener runs.
    app.get("/fast", (_req, res) => {
      fastArrived.open();
      res.send("fast");
    });
    const { server } = await listen(app);
    const shutdown = createGracefulShutdown({ server, logger, timeoutMs: 5_000 });

    // A keep-alive connection busy with /slow is not idle, so it stays open when the
    // shutdown begins; a second request sent on it then arrives while draining.
    const socket = connect((server.address() as AddressInfo).port, "127.0.0.1");
    socket.write("GET /slow HTTP/1.1\r\nHost: test\r\n\r\n");
    let received = "";
    socket.on("data", (chunk) => {
      received += chunk;
    });
    await slowArrived.opened;
    const exitCode = shutdown("SIGTERM");
    socket.write("GET /fast HTTP/1.1\r\nHost: test\r\n\r\n");

    await once(socket, "close");
    await expect(exitCode).resolves.toBe(0);
    const responses = received.split(/(?=HTTP\/1\.1 )/);
    expect(responses).toHaveLength(2);
    expect(responses[1]).toMatch(/^HTTP\/1\.1 200/);
    expect(responses[1]).toMatch(/\r\nConnection: close\r\n/i);
    expect(responses[1]).toMatch(/fast$/);
  });

  it("with a delay, keeps serving without keep-alive, leaves idle connections open, then refuses", async () => {
    const app = express().get("/", (_req, res) => {
      res.send("ok");
    });
    const { server, url } = await listen(app);
    // The delay's clock is faked: it ends when the test says so, however slow the machine.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const shutdown = createGracefulShutdown({ server, logger, timeoutMs: 1_000, delayMs: 300 });

    // An idle keep-alive connection (as a proxy holds them): not closed by the server
    // during the delay, where closing it could race a request the proxy sends on it.
    const idle = connect((server.address() as AddressInfo).port, "127.0.0.1");
    idle.write("GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    await once(idle, "data");
    let idleClosed = false;
    const closed = once(idle, "close").then(() => {
      idleClosed = true;
    });
    const exitCode = shutdown("SIGTERM");
    const done = track(exitCode);

    await vi.advanceTimersByTimeAsync(299);
    const during = await fetch(`${url}/`);
    expect(await during.text()).toBe("ok");
    expect(during.headers.get("connection")).toBe("close");
    expect(idleClosed).toBe(false);
    expect(done.settled).toBe(false);

    await vi.advanceTimersByTimeAsync(1);
    await closed;
    await expect(exitCode).resolves.toBe(0);
    await expect(fetch(`${url}/`)).rejects.toThrow();
  });

  it("cuts requests that outlive the deadline and reports failed hooks", async () => {
    const arrived = gate();
    const app = express();
    app.get("/stuck", () => {
      arrived.open(); // and never answers
    });
    const { server, url } = await listen(app);
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const shutdown = createGracefulShutdown({
      server,
      logger,
      timeoutMs: 100,
      hooks: [
        () => {
          throw new Error("flush failed");
        },
      ],
    });

    // The request is in the handler, so the shutdown has a request to cut (not merely a
    // connection refused before it arrived).
    const stuck = fetch(`${url}/stuck`);
    const cut = track(stuck);
    await arrived.opened;
    const exitCode = shutdown("SIGTERM");
    const done = track(exitCode);
    await vi.advanceTimersByTimeAsync(99);
    expect(done.settled).toBe(false);
    expect(cut.settled).toBe(false);

    await vi.advanceTimersByTimeAsync(1);
    await expect(exitCode).resolves.toBe(1);
    await expect(stuck).rejects.toThrow();
  });
});

describe("createGracefulShutdown of a server that never listened", () => {
  it("skips the delay (no client knows it) and runs the hooks", async () => {
    const { createServer } = await import("node:http");
    const server = createServer();
    const hooks: string[] = [];
    // An hour: the test would time out if the delay were kept.
    const shutdown = createGracefulShutdown({
      server,
      logger,
      timeoutMs: 1_000,
      delayMs: 3_600_000,
      hooks: [() => void hooks.push("close pools")],
    });
    expect(await shutdown("SIGTERM")).toBe(0);
    expect(hooks).toEqual(["close pools"]);
  });
});
