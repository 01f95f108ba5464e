// Fake services behind the proxy. nginx resolves the service names while it runs through
// Docker's embedded DNS, which ignores /etc/hosts (`--add-host`), so the services are
// faked by tiny Node HTTP servers in containers on user-defined networks, reached by
// their network aliases ("backend", "counter") like the real services in Compose.
import type { IncomingHttpHeaders } from "node:http";
import { eventually } from "@app/test-support";
import { containerName, docker, publishedPort } from "./docker.ts";

const NODE_IMAGE = process.env.NODE_IMAGE ?? "node:24-trixie-slim";

export interface Received {
  method: string;
  url: string;
  httpVersion: string;
  /** The port nginx connected from: the same port again means a reused connection. */
  remotePort: number;
  headers: IncomingHttpHeaders;
  bodyLength: number;
}

/** A JSON answer; `repeat` answers { items: "x" repeated that many times } instead. */
export type Reply = { status: number; body?: unknown; repeat?: number } | "never";

/**
 * The fake service, run with `node -e`: it records every request (method, URL, HTTP
 * version, headers, body length) and answers from FAKE_ROUTES ("METHOD /path", query
 * string ignored), else a JSON 404. "never" holds the request open: an upstream that
 * hangs. Like the real services it echoes X-Request-Id; X-Served-By names the fake.
 * GET /__received returns the recorded requests; the test reads it on a published port.
 */
const FAKE_SERVER = `
const http = require("node:http");
const routes = JSON.parse(process.env.FAKE_ROUTES);
const received = [];
const json = (res, status, body) => {
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8" });
  res.end(JSON.stringify(body));
};
http
  .createServer((req, res) => {
    let bodyLength = 0;
    req.on("data", (chunk) => { bodyLength += chunk.length; });
    req.on("end", () => {
      const { method, url, httpVersion, headers } = req;
      if (url === "/__received") return json(res, 200, received);
      const remotePort = req.socket.remotePort;
      received.push({ method, url, httpVersion, headers, bodyLength, remotePort });
      const key = method + " " + url.split("?")[0];
      const reply = routes[key] ?? { status: 404, body: { error: "Not found: " + key } };
      if (reply === "never") return;
      if (typeof headers["x-request-id"] === "string") {
        res.setHeader("X-Request-Id", headers["x-request-id"]);
      }
      res.setHeader("X-Served-By", process.env.FAKE_NAME);
      json(res, reply.status, reply.repeat ? { items: "x".repeat(reply.repeat) } : reply.body);
    });
  })
  .listen(Number(process.env.PORT));
// PID 1 has no default signal handlers: without this, "docker stop" would wait 10 s.
process.on("SIGTERM", () => process.exit(0));
`;

/** Where a running fake is: plain data, so globalSetup can hand it to the test files. */
export interface FakeAddress {
  container: string;
  name: string;
  /** Its published port's URL, for the test's own look at what it received. */
  base: string;
}

export type Fake = FakeAddress & {
  received(): Promise<Received[]>;
  /** The last request that reached this fake with the given URL. */
  last(url: string): Promise<Received | undefined>;
};

/** The requests a fake received, read from its published port. */
export function fakeAt(address: FakeAddress): Fake {
  const received = async (): Promise<Received[]> => {
    const res = await fetch(`${address.base}/__received`);
    if (!res.ok) throw new Error(`${address.container}: /__received answered ${res.status}`);
    return (await res.json()) as Received[];
  };
  return {
    ...address,
    received,
    async last(url: string) {
      return (await received()).findLast((r) => r.url === url);
    },
  };
}

/**
 * Runs the fake service as a container on `network`, reachable there as `alias:port`
 * (also published on a random loopback port for the test's own look at what it got).
 */
export async function startFake(options: {
  network: string;
  alias: string;
  port: number;
  name: string;
  routes: Record<string, Reply>;
}): Promise<Fake> {
  const container = containerName(`fake-${options.name}`);
  await docker(
    "run",
    "--detach",
    "--name",
    container,
    ...["--network", options.network, "--network-alias", options.alias],
    ...["--env", `PORT=${options.port}`, "--env", `FAKE_NAME=${options.name}`],
    ...["--env", `FAKE_ROUTES=${JSON.stringify(options.routes)}`],
    ...["--publish", `127.0.0.1::${options.port}`],
    NODE_IMAGE,
    ...["node", "-e", FAKE_SERVER],
  );
  const base = `http://127.0.0.1:${await publishedPort(container, `${options.port}/tcp`)}`;
  const fake = fakeAt({ container, name: options.name, base });
  await eventually(fake.received, 30_000, 100); // ready once it answers
  return fake;
}

/** A container that holds an address on `network` (see the recreated-backend test). */
export async function startPlaceholder(label: string, network: string): Promise<void> {
  const container = containerName(label);
  await docker(
    ...["run", "--detach", "--name", container],
    ...["--network", network, NODE_IMAGE, "sleep", "infinity"],
  );
}

export const DATA = {
  message: "Hello from Backend API managed by Docker Compose!",
  timestamp: "2026-01-02T03:04:05.678Z",
  servedByHost: "fake-backend",
};
const BIG_LENGTH = 1024 * 1024; // larger than nginx's in-memory proxy buffers
export const BIG = { items: "x".repeat(BIG_LENGTH) };

export const BACKEND_ROUTES: Record<string, Reply> = {
  "GET /data": { status: 200, body: DATA },
  "POST /echo": { status: 200, body: { ok: true } },
  "GET /big": { status: 200, repeat: BIG_LENGTH },
  "GET /unready": { status: 503, body: { status: "not ready" } },
  "GET /slow": "never",
};
export const COUNTER_ROUTES: Record<string, Reply> = {
  "POST /visits": { status: 200, body: { count: 42 } },
};
