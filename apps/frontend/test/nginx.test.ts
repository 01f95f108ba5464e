// Builds the frontend image and checks the nginx configuration for real, in Docker.
// nginx resolves the service names while it runs through Docker's embedded DNS, which
// ignores /etc/hosts (`--add-host`), so the services behind the proxy are faked by tiny
// Node HTTP servers in containers on user-defined networks created by the test, reached
// by their network aliases ("backend", "counter") like the real services in Compose.
// Without a working Docker these tests fail rather than skip.
import { execFile as execFileCallback } from "node:child_process";
import type { IncomingHttpHeaders } from "node:http";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const execFile = promisify(execFileCallback);

const NGINX_IMAGE = process.env.NGINX_IMAGE || "nginx:1.30";
const NODE_IMAGE = process.env.NODE_IMAGE ?? "node:24-trixie-slim";
const CONTEXT = fileURLToPath(new URL("..", import.meta.url));
const RUN_ID = `${process.pid}-${Date.now().toString(36)}`;
const IMAGE = `app-frontend-test:${RUN_ID}`;
const CSP =
  "default-src 'self'; base-uri 'self'; object-src 'none'; frame-ancestors 'none'; form-action 'self'";

/** Runs the docker CLI; rejects (failing the test) on a non-zero exit. */
async function docker(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return execFile("docker", args, { timeout: 180_000, maxBuffer: 32 * 1024 * 1024 });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** fetch, plus how long the answer took (headers and body) in milliseconds. */
async function timedFetch(url: string, init?: RequestInit) {
  const started = Date.now();
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
  const body = await res.text();
  return { res, body, ms: Date.now() - started };
}

// Everything created here, removed in afterAll (which also runs after failures).
const containers: string[] = [];
const networks: string[] = [];

async function createNetwork(label: string): Promise<string> {
  const name = `app-frontend-test-${label}-${RUN_ID}`;
  networks.push(name);
  await docker("network", "create", name);
  return name;
}

/** The container's address on the given network ("" when it has none). */
async function ipOf(container: string, network: string): Promise<string> {
  const { stdout } = await docker(
    "inspect",
    "--format",
    `{{with index .NetworkSettings.Networks "${network}"}}{{.IPAddress}}{{end}}`,
    container,
  );
  return stdout.trim();
}

/** The host port Docker published for the container's port (on 127.0.0.1). */
async function publishedPort(container: string, port: string): Promise<string> {
  const { stdout } = await docker("port", container, port);
  const published = /:(\d+)\s*$/m.exec(stdout)?.[1];
  if (!published) throw new Error(`no published port for ${container}: ${stdout}`);
  return published;
}

/**
 * Sends bytes as they are (fetch would refuse or repair a malformed request) and
 * returns the status code, the headers (lower-case names) and the body of the answer.
 */
async function rawRequest(url: string, request: string) {
  const { hostname, port } = new URL(url);
  const answer = await new Promise<string>((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.end(request));
    const chunks: Buffer[] = [];
    socket.setTimeout(10_000, () => socket.destroy(new Error("no answer within 10 s")));
    socket.on("data", (chunk) => chunks.push(chunk));
    socket.on("end", () => resolve(Buffer.concat(chunks).toString("latin1")));
    socket.on("error", reject);
  });
  const [head = "", body = ""] = answer.split("\r\n\r\n", 2);
  const [statusLine = "", ...lines] = head.split("\r\n");
  const headers = Object.fromEntries(
    lines.map((line) => {
      const colon = line.indexOf(":");
      return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
    }),
  );
  return { status: Number(statusLine.split(" ")[1]), headers, body };
}

// ---------------------------------------------------------------------------------
// Fake upstreams

interface Received {
  method: string;
  url: string;
  httpVersion: string;
  /** The port nginx connected from: the same port again means a reused connection. */
  remotePort: number;
  headers: IncomingHttpHeaders;
  bodyLength: number;
}

/** A JSON answer; `repeat` answers { items: "x" repeated that many times } instead. */
type Reply = { status: number; body?: unknown; repeat?: number } | "never";

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

type Fake = Awaited<ReturnType<typeof startFake>>;

/**
 * Runs the fake service as a container on `network`, reachable there as `alias:port`
 * (also published on a random loopback port for the test's own look at what it got).
 */
async function startFake(options: {
  network: string;
  alias: string;
  port: number;
  name: string;
  routes: Record<string, Reply>;
}) {
  const container = `app-frontend-test-fake-${options.name}-${RUN_ID}`;
  containers.push(container);
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
  const received = async (): Promise<Received[]> => {
    const res = await fetch(`${base}/__received`);
    if (!res.ok) throw new Error(`${container}: /__received answered ${res.status}`);
    return (await res.json()) as Received[];
  };
  // Ready once it answers.
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await received();
      break;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(100);
    }
  }
  return {
    container,
    name: options.name,
    received,
    /** The last request that reached this fake with the given URL. */
    async last(url: string): Promise<Received | undefined> {
      return (await received()).findLast((r) => r.url === url);
    },
  };
}

const DATA = {
  message: "Hello from Backend API managed by Docker Compose!",
  timestamp: "2026-01-02T03:04:05.678Z",
  servedByHost: "fake-backend",
};
const BIG_LENGTH = 1024 * 1024; // larger than nginx's in-memory proxy buffers
const BIG = { items: "x".repeat(BIG_LENGTH) };

const BACKEND_ROUTES: Record<string, Reply> = {
  "GET /data": { status: 200, body: DATA },
  "POST /echo": { status: 200, body: { ok: true } },
  "GET /big": { status: 200, repeat: BIG_LENGTH },
  "GET /unready": { status: 503, body: { status: "not ready" } },
  "GET /slow": "never",
};
const COUNTER_ROUTES: Record<string, Reply> = {
  "POST /visits": { status: 200, body: { count: 42 } },
};

// ---------------------------------------------------------------------------------
// The frontend container

/**
 * Starts the image on `network` with the given environment, publishes 8080 on a random
 * loopback port, waits for the image's HEALTHCHECK to pass, returns the base URL.
 */
async function startFrontend(
  label: string,
  options: { network: string; env?: Record<string, string>; extraArgs?: string[] },
): Promise<{ url: string; container: string }> {
  const container = `app-frontend-test-${label}-${RUN_ID}`;
  containers.push(container); // before `run`, so cleanup also catches a half-started one
  await docker(
    "run",
    "--detach",
    "--name",
    container,
    ...["--network", options.network],
    ...Object.entries(options.env ?? {}).flatMap(([key, value]) => ["--env", `${key}=${value}`]),
    ...["--publish", "127.0.0.1::8080"],
    ...(options.extraArgs ?? []),
    IMAGE,
  );
  await waitForHealthy(container);
  return { url: `http://127.0.0.1:${await publishedPort(container, "8080/tcp")}`, container };
}

async function health(container: string): Promise<{ state?: string; health?: string }> {
  const { stdout } = await docker(
    "inspect",
    "--format",
    "{{.State.Status}} {{.State.Health.Status}}",
    container,
  );
  const [state, health] = stdout.trim().split(" ");
  return { state, health };
}

async function waitForHealthy(container: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { state, health: status } = await health(container);
    if (status === "healthy") return;
    if (state !== "running" || Date.now() > deadline) {
      const logs = await docker("logs", container).catch((error: Error) => error);
      throw new Error(
        `${container} is ${state}/${status}; logs:\n${JSON.stringify(logs, null, 2)}`,
      );
    }
    await sleep(250);
  }
}

/** Asserts the JSON 502 nginx answers for an upstream it cannot reach. */
function expectJson502(answer: Awaited<ReturnType<typeof timedFetch>>): void {
  const { res, body, ms } = answer;
  expect(res.status).toBe(502);
  expect(res.headers.get("content-type")).toBe("application/json");
  expect(res.headers.get("content-security-policy")).toBe(CSP);
  expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f]{32}$/);
  expect(JSON.parse(body)).toEqual({ error: expect.any(String) });
  // Quick: answered at once, not after waiting for a connection.
  expect(ms).toBeLessThan(1_500);
}

// ---------------------------------------------------------------------------------
// Shared fixtures: the image and a network with a fake backend and counter

let network: string;
let backend: Fake;
let counter: Fake;

beforeAll(async () => {
  network = await createNetwork("net");
  [backend, counter] = await Promise.all([
    startFake({ network, alias: "backend", port: 3001, name: "backend", routes: BACKEND_ROUTES }),
    startFake({ network, alias: "counter", port: 3002, name: "counter", routes: COUNTER_ROUTES }),
    docker("build", "--quiet", "--build-arg", `NGINX_IMAGE=${NGINX_IMAGE}`, "-t", IMAGE, CONTEXT),
  ]);
});

afterAll(async () => {
  // Runs after failures too; every step tolerates what never got created.
  if (containers.length > 0) await docker("rm", "--force", ...containers).catch(() => {});
  for (const name of networks) await docker("network", "rm", name).catch(() => {});
  await docker("image", "rm", "--force", IMAGE).catch(() => {});
});

// ---------------------------------------------------------------------------------
// Tests

describe("nginx configuration", () => {
  it("passes nginx -t without the services being resolvable", async () => {
    // No backend or counter anywhere: names are only resolved when a request comes.
    const { stderr } = await docker("run", "--rm", IMAGE, "nginx", "-t");
    expect(stderr).toContain("syntax is ok");
    expect(stderr).toContain("test is successful");
  });

  it("renders upstreams and resolver from the environment, leaves nginx variables alone", async () => {
    const { stdout } = await docker(
      "run",
      "--rm",
      ...["--network", network],
      ...["--env", "BACKEND_UPSTREAM=api.internal:4001"],
      ...["--env", "COUNTER_UPSTREAM=visits.internal:4002"],
      // A variable named like one of nginx's must not be substituted.
      ...["--env", "host=clobbered"],
      IMAGE,
      "nginx",
      "-T",
    );
    // Upstreams that keep their addresses up to date (`resolve`) and idle connections open.
    expect(stdout).toMatch(
      /upstream backend \{\s+zone backend 64k;\s+server api\.internal:4001 resolve;\s+keepalive 32;/,
    );
    expect(stdout).toMatch(
      /upstream counter \{\s+zone counter 64k;\s+server visits\.internal:4002 resolve;\s+keepalive 32;/,
    );
    expect(stdout).toContain("proxy_pass http://backend;");
    expect(stdout).toContain("proxy_pass http://counter;");
    expect(stdout).toContain("proxy_http_version 1.1;");
    // The entrypoint took the nameserver from resolv.conf: Docker's embedded DNS.
    expect(stdout).toContain("resolver 127.0.0.11 valid=2s ipv6=off;");
    expect(stdout).toContain("proxy_set_header Host $host;");
    expect(stdout).not.toContain("clobbered");
    expect(stdout).not.toContain("${");
  });
});

describe("frontend container", () => {
  let url: string;
  let container: string;

  beforeAll(async () => {
    ({ url, container } = await startFrontend("main", { network }));
  });

  it("serves the page with security headers and no nginx version", async () => {
    const res = await fetch(`${url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    expect(res.headers.get("content-security-policy")).toBe(CSP);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
    expect(res.headers.get("x-frame-options")).toBe("DENY");
    expect(res.headers.get("server")).toBe("nginx");
    expect(res.headers.get("cache-control")).toBe("no-cache");
    const html = await res.text();
    expect(html).toContain("<title>Docker Compose visit counter</title>");
    expect(html).toContain('<script src="app.js" type="module"></script>');
    expect(html).toContain("Fetch Data from Backend");
  });

  it("serves assets compressed, revalidated by ETag", async () => {
    const res = await fetch(`${url}/app.js`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/javascript/);
    expect(res.headers.get("content-encoding")).toBe("gzip");
    expect(res.headers.get("cache-control")).toBe("no-cache");
    expect(res.headers.get("content-security-policy")).toBe(CSP);
    expect(await res.text()).toContain("/api/visits");

    const etag = res.headers.get("etag");
    expect(etag).toBeTruthy();
    const again = await fetch(`${url}/app.js`, { headers: { "If-None-Match": etag ?? "" } });
    expect(again.status).toBe(304);

    const css = await fetch(`${url}/style.css`);
    expect(css.headers.get("content-type")).toMatch(/^text\/css/);
    expect(css.headers.get("cache-control")).toBe("no-cache");
  });

  it("answers 404 for unknown files in plain text, still with security headers", async () => {
    const res = await fetch(`${url}/no-such-page.html`);
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toBe("text/plain");
    expect(res.headers.get("content-security-policy")).toBe(CSP);
    expect(await res.text()).toBe("Not found\n");
  });

  it("answers a wrong method on a static file with a plain-text 405", async () => {
    const res = await fetch(`${url}/`, { method: "POST" });
    expect(res.status).toBe(405);
    expect(res.headers.get("content-type")).toBe("text/plain");
    expect(await res.text()).toBe("Method not allowed\n");
  });

  it("answers requests it cannot serve with a short plain-text 4xx, never its HTML pages", async () => {
    const hostile: Array<[string, string, number, string]> = [
      ["malformed request line", "NONSENSE\r\n\r\n", 400, "Bad request\n"],
      [
        "path above the root",
        "GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        "Bad request\n",
      ],
      ["TRACE", "TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "Method not allowed\n"],
      [
        // 20 KB of headers: more than nginx takes (16 KB) and more than Node's default
        // limit, which would answer with an empty 431.
        "header flood",
        "GET /api/data HTTP/1.1\r\nHost: x\r\n" +
          Array.from({ length: 500 }, (_, i) => `X-Flood-${i}: ${"a".repeat(30)}\r\n`).join("") +
          "\r\n",
        400,
        "Bad request\n",
      ],
      [
        "an error page asked for directly",
        "GET /.errors/400 HTTP/1.1\r\nHost: x\r\n\r\n",
        404,
        "Not found\n",
      ],
    ];
    for (const [what, request, status, body] of hostile) {
      const answer = await rawRequest(url, request);
      expect({ what, status: answer.status, body: answer.body }).toEqual({ what, status, body });
      expect(answer.headers["content-type"], what).toBe("text/plain");
      expect(answer.headers["content-security-policy"], what).toBe(CSP);
    }
    // The header flood never reached the backend.
    expect((await backend.received()).some((r) => "x-flood-0" in r.headers)).toBe(false);
    // A big but ordinary header (a 7 KB cookie) still gets through.
    const cookie = await fetch(`${url}/api/data`, {
      headers: { Cookie: `a=${"x".repeat(7_000)}` },
    });
    expect(cookie.status).toBe(200);
  });

  it("answers /healthz itself", async () => {
    const res = await fetch(`${url}/healthz`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(await res.text()).toBe("ok\n");
  });

  it("proxies GET /api/data to the backend's /data with forwarding headers", async () => {
    const res = await fetch(`${url}/api/data`, {
      headers: { "X-Forwarded-For": "203.0.113.7", "X-Request-Id": "chosen-by-client" },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await res.json()).toEqual(DATA);
    expect(res.headers.get("content-security-policy")).toBe(CSP);

    const seen = await backend.last("/data");
    expect(seen).toMatchObject({ method: "GET", httpVersion: "1.1" });
    const headers = seen?.headers ?? {};
    // HTTP/1.1 without nginx's default "Connection: close" (see api-proxy.conf).
    expect(headers.connection).toBeUndefined();
    expect(headers.host).toBe("127.0.0.1");
    expect(headers["x-forwarded-host"]).toBe(new URL(url).host);
    expect(headers["x-forwarded-proto"]).toBe("http");
    expect(headers["x-real-ip"]).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    // nginx appends the address it saw to what the client sent.
    expect(headers["x-forwarded-for"]).toBe(`203.0.113.7, ${headers["x-real-ip"]}`);
    // The client's id is replaced by nginx's, which comes back exactly once.
    expect(headers["x-request-id"]).toMatch(/^[0-9a-f]{32}$/);
    expect(res.headers.get("x-request-id")).toBe(headers["x-request-id"]);
  });

  it("logs each request as one JSON line: request id, status, upstream and times", async () => {
    const res = await fetch(`${url}/api/data?logged=1`);
    const id = res.headers.get("x-request-id");
    // The access log is buffered and flushed at least every second.
    let line: Record<string, unknown> | undefined;
    const deadline = Date.now() + 5_000;
    while (!line && Date.now() < deadline) {
      await sleep(250);
      const { stdout } = await docker("logs", container);
      const found = stdout.split("\n").find((l) => l.includes(`"request_id":"${id}"`));
      if (found) line = JSON.parse(found);
    }
    expect(line).toMatchObject({
      request_id: id,
      method: "GET",
      uri: "/api/data?logged=1",
      status: 200,
      upstream: expect.stringMatching(/^\d+\.\d+\.\d+\.\d+:3001$/),
      upstream_status: "200",
      request_time: expect.any(Number),
    });
    // The id nginx logged is the one the service received.
    expect((await backend.last("/data?logged=1"))?.headers["x-request-id"]).toBe(id);
  });

  it("reuses its connections to a service (upstream keepalive)", async () => {
    for (let i = 0; i < 20; i++)
      expect((await fetch(`${url}/api/data?keepalive=${i}`)).status).toBe(200);
    const requests = (await backend.received()).filter((r) => r.url.startsWith("/data?keepalive="));
    expect(requests).toHaveLength(20);
    // Sequential requests: each nginx worker (one per core) reuses its idle connection.
    const connections = new Set(requests.map((r) => r.remotePort));
    expect(connections.size).toBeLessThanOrEqual(4);
  });

  it("keeps query strings and encoded characters when stripping /api", async () => {
    const data = await fetch(`${url}/api/data?page=2&q=a%20b`);
    expect(data.status).toBe(200);
    expect(await backend.last("/data?page=2&q=a%20b")).toMatchObject({ method: "GET" });

    const missing = await fetch(`${url}/api/items/a%20b`);
    expect(missing.status).toBe(404);
    expect(await backend.last("/items/a%20b")).toMatchObject({ method: "GET" });
  });

  it("proxies POST /api/visits to the counter's /visits", async () => {
    const before = (await backend.received()).length;
    const res = await fetch(`${url}/api/visits`, {
      method: "POST",
      headers: { "Idempotency-Key": "visit-1" },
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ count: 42 });
    expect(res.headers.get("x-served-by")).toBe("counter");
    const seen = await counter.last("/visits");
    expect(seen).toMatchObject({ method: "POST" });
    expect(seen?.headers["x-request-id"]).toMatch(/^[0-9a-f]{32}$/);
    // The client's key reaches the counter, which recognises a retry by it.
    expect(seen?.headers["idempotency-key"]).toBe("visit-1");

    const withQuery = await fetch(`${url}/api/visits?source=test`, { method: "POST" });
    expect(withQuery.status).toBe(200);
    expect(await counter.last("/visits?source=test")).toMatchObject({ method: "POST" });
    expect((await backend.received()).length).toBe(before);
  });

  it("passes the services' own error responses through unchanged", async () => {
    const missing = await fetch(`${url}/api/missing`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await missing.json()).toEqual({ error: "Not found: GET /missing" });

    // A 503 from the service is its answer, not nginx's "unavailable" page.
    const unready = await fetch(`${url}/api/unready`);
    expect(unready.status).toBe(503);
    expect(await unready.json()).toEqual({ status: "not ready" });
  });

  it("refuses a body over 64 KB with a JSON 413, without calling the backend", async () => {
    const before = (await backend.received()).length;
    const res = await fetch(`${url}/api/data`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ filler: "x".repeat(100 * 1024) }),
    });
    expect(res.status).toBe(413);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(res.headers.get("content-security-policy")).toBe(CSP);
    expect(await res.json()).toEqual({ error: expect.any(String) });
    expect((await backend.received()).length).toBe(before);
  });

  it("answers a JSON 504 when the backend does not respond within 10 s", async () => {
    const started = Date.now();
    const res = await fetch(`${url}/api/slow`);
    expect(res.status).toBe(504);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toEqual({ error: expect.any(String) });
    expect(Date.now() - started).toBeGreaterThanOrEqual(9_000);
  });
});

describe("frontend container with services refusing connections", () => {
  let url: string;

  beforeAll(async () => {
    // The names resolve (the fakes), but nothing listens on these ports.
    ({ url } = await startFrontend("refused", {
      network,
      env: { BACKEND_UPSTREAM: "backend:3999", COUNTER_UPSTREAM: "counter:3999" },
    }));
  });

  it("answers /api/data with a JSON 502", async () => {
    expectJson502(await timedFetch(`${url}/api/data`));
  });

  it("answers /api/visits with a JSON 502", async () => {
    expectJson502(await timedFetch(`${url}/api/visits`, { method: "POST" }));
  });
});

describe("frontend container with no services at all", () => {
  let url: string;
  let container: string;

  beforeAll(async () => {
    // A network where neither "backend" nor "counter" exists; the image's defaults.
    const empty = await createNetwork("empty");
    ({ url, container } = await startFrontend("alone", { network: empty }));
  });

  it("starts, stays healthy and serves the page", async () => {
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("Docker Compose visit counter");
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });

  it("answers /api/data and /api/visits with a JSON 502", async () => {
    expectJson502(await timedFetch(`${url}/api/data`));
    expectJson502(await timedFetch(`${url}/api/visits`, { method: "POST" }));
    expect(await health(container)).toEqual({ state: "running", health: "healthy" });
  });
});

describe("frontend container while the backend is stopped, recreated and scaled", () => {
  // A network of its own, so stopping "backend" here disturbs no other test.
  let net: string;
  let url: string;
  let container: string;
  let first: Fake;
  let firstIp: string;

  /** Polls GET /api/data until `done` holds for the names of the fakes seen answering. */
  async function pollUntil(done: (seen: Set<string>) => boolean): Promise<Set<string>> {
    const seen = new Set<string>();
    const deadline = Date.now() + 15_000;
    while (!done(seen)) {
      if (Date.now() > deadline) throw new Error(`gave up; answered by: ${[...seen]}`);
      const { res } = await timedFetch(`${url}/api/data`);
      const name = res.headers.get("x-served-by");
      if (res.status === 200 && name) seen.add(name);
      else await sleep(250);
    }
    return seen;
  }

  beforeAll(async () => {
    net = await createNetwork("restart");
    const fake = { network: net, alias: "backend", port: 3001, routes: BACKEND_ROUTES };
    first = await startFake({ ...fake, name: "first" });
    firstIp = await ipOf(first.container, net);
    ({ url, container } = await startFrontend("restart", { network: net }));
  });

  it("proxies to the running backend", async () => {
    const res = await fetch(`${url}/api/data`);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-served-by")).toBe("first");
  });

  it("answers a quick JSON 502 once the backend is stopped", async () => {
    await docker("stop", first.container);
    // nginx may still hold the old address for up to valid=2s; a request in that window
    // tries it and can wait for proxy_connect_timeout (500 ms). After it, the stopped
    // container's name no longer resolves, which nginx answers at once with a 502.
    await sleep(3_000);
    expectJson502(await timedFetch(`${url}/api/data`));
    expect(await health(container)).toEqual({ state: "running", health: "healthy" });
  });

  it("picks up a recreated backend at a new address without a restart", async () => {
    // Docker may hand the freed address straight to the next container: take it first,
    // so the new backend surely gets a different one.
    containers.push(`app-frontend-test-ipholder-${RUN_ID}`);
    await docker(
      ...["run", "--detach", "--name", `app-frontend-test-ipholder-${RUN_ID}`],
      ...["--network", net, NODE_IMAGE, "sleep", "infinity"],
    );
    const second = await startFake({
      network: net,
      alias: "backend",
      port: 3001,
      name: "second",
      routes: BACKEND_ROUTES,
    });
    expect(await ipOf(second.container, net)).not.toBe(firstIp);

    const started = Date.now();
    await pollUntil((seen) => seen.has("second"));
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("spreads requests over a new replica without a restart", async () => {
    await startFake({
      network: net,
      alias: "backend",
      port: 3001,
      name: "third",
      routes: BACKEND_ROUTES,
    });
    // Both addresses come back for "backend"; nginx rotates them per request.
    const seen = await pollUntil((names) => names.has("second") && names.has("third"));
    expect([...seen].sort()).toEqual(["second", "third"]);
  });
});

describe("frontend container hardened as in production", () => {
  let url: string;

  beforeAll(async () => {
    ({ url } = await startFrontend("hardened", {
      network,
      // What a production override would set. The writable paths are tmpfs owned by
      // uid 101: /tmp (pid file), /var/cache/nginx (temp files), /etc/nginx/conf.d
      // (templates rendered at start).
      extraArgs: [
        ...["--user", "101", "--read-only", "--cap-drop", "ALL"],
        ...["--security-opt", "no-new-privileges"],
        ...["--tmpfs", "/tmp", "--tmpfs", "/var/cache/nginx:uid=101,gid=101"],
        ...["--tmpfs", "/etc/nginx/conf.d:uid=101,gid=101"],
      ],
    }));
  });

  it("serves the page", async () => {
    const res = await fetch(`${url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-security-policy")).toBe(CSP);
    expect(await res.text()).toContain("Docker Compose visit counter");
  });

  it("proxies the API", async () => {
    const res = await fetch(`${url}/api/data`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(DATA);
  });

  it("buffers large bodies through its temp directories", async () => {
    // A 1 MB response and a 40 KB request body exceed nginx's memory buffers, so they
    // go through /var/cache/nginx: this fails if the temp paths are not writable.
    const big = await fetch(`${url}/api/big`);
    expect(big.status).toBe(200);
    expect(await big.json()).toEqual(BIG);

    const res = await fetch(`${url}/api/echo`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ filler: "x".repeat(40 * 1024) }),
    });
    expect(res.status).toBe(200);
    expect((await backend.last("/echo"))?.bodyLength).toBeGreaterThan(40 * 1024);
  });
});
