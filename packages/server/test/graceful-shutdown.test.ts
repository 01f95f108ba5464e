import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import express from "express";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createGracefulShutdown } from "../src/index.ts";

const logger = pino({ level: "silent" });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function listen(app: express.Express) {
  const server = app.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}` };
}

describe("createGracefulShutdown", () => {
  it("drains in-flight requests, refuses new ones, then runs hooks in order", async () => {
    const events: string[] = [];
    const app = express();
    app.get("/slow", async (_req, res) => {
      await new Promise((resolve) => setTimeout(resolve, 300));
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
    await new Promise((resolve) => setTimeout(resolve, 50));
    const exitCode = shutdown("SIGTERM");

    await expect(fetch(`${url}/slow`)).rejects.toThrow();
    await expect(inFlight).resolves.toEqual({ done: true });
    await expect(exitCode).resolves.toBe(0);
    expect(events).toEqual(["response", "flush", "close pools"]);
    expect(shutdown("SIGINT")).toBe(exitCode);
  });

  it("answers a request that arrives while draining, with Connection: close", async () => {
    const app = express();
    app.get("/slow", async (_req, res) => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      res.send("slow");
    });
    // Answers synchronously, before any later 'request' listener runs.
    app.get("/fast", (_req, res) => {
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
    await new Promise((resolve) => setTimeout(resolve, 50));
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
    const shutdown = createGracefulShutdown({ server, logger, timeoutMs: 1_000, delayMs: 300 });

    // An idle keep-alive connection (as a proxy holds them): not closed by the server
    // during the delay, where closing it could race a request the proxy sends on it.
    const idle = connect((server.address() as AddressInfo).port, "127.0.0.1");
    idle.write("GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    await once(idle, "data");
    const idleClosed = once(idle, "close").then(() => Date.now());
    const started = Date.now();
    const exitCode = shutdown("SIGTERM");

    const during = await fetch(`${url}/`);
    expect(await during.text()).toBe("ok");
    expect(during.headers.get("connection")).toBe("close");
    const early = await Promise.race([idleClosed, sleep(150).then(() => "still open")]);
    expect(early).toBe("still open");

    await expect(exitCode).resolves.toBe(0);
    expect(await idleClosed).toBeGreaterThanOrEqual(started + 300);
    await expect(fetch(`${url}/`)).rejects.toThrow();
  });

  it("cuts requests that outlive the deadline and reports failed hooks", async () => {
    const app = express();
    app.get("/stuck", () => {
      // never answers
    });
    const { server, url } = await listen(app);
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

    const stuck = fetch(`${url}/stuck`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = Date.now();
    await expect(shutdown("SIGTERM")).resolves.toBe(1);
    expect(Date.now() - started).toBeLessThan(2_000);
    await expect(stuck).rejects.toThrow();
  });
});
