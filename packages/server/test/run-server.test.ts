import type { AddressInfo } from "node:net";
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
