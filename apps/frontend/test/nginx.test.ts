// Builds the frontend image and checks the nginx configuration for real, in Docker.
// The services behind the proxy are faked by small HTTP servers in this process; the
// containers reach them through Docker's host gateway (`--add-host backend:host-gateway`).
// Without a working Docker these tests fail rather than skip.
import { execFile as execFileCallback } from "node:child_process";
import { once } from "node:events";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const execFile = promisify(execFileCallback);

const NGINX_IMAGE = process.env.NGINX_IMAGE || "nginx:1.27";
const CONTEXT = fileURLToPath(new URL("..", import.meta.url));
const RUN_ID = `${process.pid}-${Date.now().toString(36)}`;
const IMAGE = `app-frontend-test:${RUN_ID}`;
const CSP =
  "default-src 'self'; base-uri 'self'; object-src 'none'; frame-ancestors 'none'; form-action 'self'";

/** Runs the docker CLI; rejects (failing the test) on a non-zero exit. */
async function docker(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return execFile("docker", args, { timeout: 180_000, maxBuffer: 32 * 1024 * 1024 });
}

// ---------------------------------------------------------------------------------
// Fake upstreams

interface Received {
  method: string;
  url: string;
  httpVersion: string;
  headers: IncomingHttpHeaders;
  bodyLength: number;
}

type Reply = { status: number; body: unknown } | "never";

/**
 * An HTTP server on every interface (containers connect through the host gateway)
 * that records each request and answers from `routes` ("METHOD /path"), else 404.
 */
async function startFake(routes: Record<string, () => Reply>) {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    let bodyLength = 0;
    req.on("data", (chunk: Buffer) => {
      bodyLength += chunk.length;
    });
    req.on("end", () => {
      const { method = "", url = "", httpVersion, headers } = req;
      received.push({ method, url, httpVersion, headers, bodyLength });
      const reply = routes[`${method} ${url}`]?.() ?? {
        status: 404,
        body: { error: `Not found: ${method} ${url}` },
      };
      if (reply === "never") return; // hold the request open: an upstream that hangs
      // Like the real services: echo the request id, answer JSON.
      const requestId = headers["x-request-id"];
      if (typeof requestId === "string") res.setHeader("X-Request-Id", requestId);
      res.writeHead(reply.status, { "Content-Type": "application/json; charset=utf-8" });
      res.end(JSON.stringify(reply.body));
    });
  });
  // Like the real services: outlive nginx's 60 s upstream keepalive_timeout.
  server.keepAliveTimeout = 65_000;
  server.listen(0, "0.0.0.0");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    port,
    received,
    /** The last request that reached this fake with the given path. */
    last(url: string): Received | undefined {
      return received.findLast((r) => r.url === url);
    },
    close: () => closeServer(server),
  };
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A port on this host where nothing listens: connecting is refused. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, "0.0.0.0");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  await closeServer(server);
  return port;
}

const DATA = {
  message: "Hello from Backend API managed by Docker Compose!",
  timestamp: "2026-01-02T03:04:05.678Z",
  servedByHost: "fake-backend",
};
const BIG = { items: "x".repeat(1024 * 1024) }; // larger than nginx's in-memory proxy buffers

let backend: Awaited<ReturnType<typeof startFake>>;
let counter: Awaited<ReturnType<typeof startFake>>;

// ---------------------------------------------------------------------------------
// Containers

const containers: string[] = [];

/**
 * Starts the image with the fakes (or the given ports) as upstreams, publishes 8080 on
 * a random loopback port, waits for the image's HEALTHCHECK to pass, returns the base URL.
 */
async function startFrontend(
  label: string,
  options: { backendPort: number; counterPort: number; extraArgs?: string[] },
): Promise<string> {
  const name = `app-frontend-test-${label}-${RUN_ID}`;
  containers.push(name); // before `run`, so cleanup also catches a half-started one
  await docker(
    "run",
    "--detach",
    "--name",
    name,
    "--add-host",
    "backend:host-gateway",
    "--add-host",
    "counter:host-gateway",
    "--env",
    `BACKEND_UPSTREAM=backend:${options.backendPort}`,
    "--env",
    `COUNTER_UPSTREAM=counter:${options.counterPort}`,
    "--publish",
    "127.0.0.1::8080",
    ...(options.extraArgs ?? []),
    IMAGE,
  );
  await waitForHealthy(name);
  const { stdout } = await docker("port", name, "8080/tcp");
  const port = /:(\d+)\s*$/m.exec(stdout)?.[1];
  if (!port) throw new Error(`no published port for ${name}: ${stdout}`);
  return `http://127.0.0.1:${port}`;
}

async function waitForHealthy(name: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { stdout } = await docker(
      "inspect",
      "--format",
      "{{.State.Status}} {{.State.Health.Status}}",
      name,
    );
    const [state, health] = stdout.trim().split(" ");
    if (health === "healthy") return;
    if (state !== "running" || Date.now() > deadline) {
      const logs = await docker("logs", name).catch((error: Error) => error);
      throw new Error(`${name} is ${state}/${health}; logs:\n${JSON.stringify(logs, null, 2)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

beforeAll(async () => {
  backend = await startFake({
    "GET /data": () => ({ status: 200, body: DATA }),
    "POST /echo": () => ({ status: 200, body: { ok: true } }),
    "GET /big": () => ({ status: 200, body: BIG }),
    "GET /unready": () => ({ status: 503, body: { status: "not ready" } }),
    "GET /slow": () => "never",
  });
  counter = await startFake({
    "POST /visits": () => ({ status: 200, body: { count: 42 } }),
  });
  await docker(
    "build",
    "--quiet",
    "--build-arg",
    `NGINX_IMAGE=${NGINX_IMAGE}`,
    "-t",
    IMAGE,
    CONTEXT,
  );
});

afterAll(async () => {
  // Runs after failures too; every step tolerates what never got created.
  if (containers.length > 0) await docker("rm", "--force", ...containers).catch(() => {});
  await docker("image", "rm", "--force", IMAGE).catch(() => {});
  await Promise.all([backend?.close(), counter?.close()]);
});

// ---------------------------------------------------------------------------------
// Tests

describe("nginx configuration", () => {
  // Names in the config must resolve for `nginx -t`; the entrypoint renders the
  // templates first because the command starts with "nginx".
  const resolvable = ["--add-host", "backend:127.0.0.1", "--add-host", "counter:127.0.0.1"];

  it("passes nginx -t", async () => {
    const { stderr } = await docker("run", "--rm", ...resolvable, IMAGE, "nginx", "-t");
    expect(stderr).toContain("syntax is ok");
    expect(stderr).toContain("test is successful");
  });

  it("renders the upstreams from the environment and leaves nginx variables alone", async () => {
    const { stdout } = await docker(
      "run",
      "--rm",
      ...["--add-host", "api.internal:127.0.0.1", "--add-host", "visits.internal:127.0.0.1"],
      ...["--env", "BACKEND_UPSTREAM=api.internal:4001"],
      ...["--env", "COUNTER_UPSTREAM=visits.internal:4002"],
      // A variable named like one of nginx's must not be substituted.
      ...["--env", "host=clobbered"],
      IMAGE,
      "nginx",
      "-T",
    );
    expect(stdout).toContain("server api.internal:4001;");
    expect(stdout).toContain("server visits.internal:4002;");
    expect(stdout).toContain("proxy_set_header Host $host;");
    expect(stdout).not.toContain("clobbered");
    expect(stdout).not.toContain("${");
  });
});

describe("frontend container", () => {
  let url: string;

  beforeAll(async () => {
    url = await startFrontend("main", { backendPort: backend.port, counterPort: counter.port });
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

  it("answers 404 for unknown files, still with security headers", async () => {
    const res = await fetch(`${url}/no-such-file.txt`);
    expect(res.status).toBe(404);
    expect(res.headers.get("content-security-policy")).toBe(CSP);
    expect(await res.text()).not.toMatch(/nginx\/\d/);
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

    const seen = backend.last("/data");
    expect(seen).toMatchObject({ method: "GET", httpVersion: "1.1" });
    const headers = seen?.headers ?? {};
    // Keepalive to the upstream: HTTP/1.1 with no "Connection: close".
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

  it("proxies POST /api/visits to the counter's /visits", async () => {
    const before = backend.received.length;
    const res = await fetch(`${url}/api/visits`, { method: "POST" });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ count: 42 });
    expect(counter.last("/visits")).toMatchObject({ method: "POST" });
    expect(counter.last("/visits")?.headers["x-request-id"]).toMatch(/^[0-9a-f]{32}$/);
    expect(backend.received.length).toBe(before);
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
    const before = backend.received.length;
    const res = await fetch(`${url}/api/data`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ filler: "x".repeat(100 * 1024) }),
    });
    expect(res.status).toBe(413);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(res.headers.get("content-security-policy")).toBe(CSP);
    expect(await res.json()).toEqual({ error: expect.any(String) });
    expect(backend.received.length).toBe(before);
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

describe("frontend container with its upstreams down", () => {
  let url: string;

  beforeAll(async () => {
    url = await startFrontend("down", {
      backendPort: await closedPort(),
      counterPort: await closedPort(),
    });
  });

  it("answers /api/data with a JSON 502", async () => {
    const res = await fetch(`${url}/api/data`);
    expect(res.status).toBe(502);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(res.headers.get("content-security-policy")).toBe(CSP);
    expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f]{32}$/);
    expect(await res.json()).toEqual({ error: expect.any(String) });
  });

  it("answers /api/visits with a JSON 502", async () => {
    const res = await fetch(`${url}/api/visits`, { method: "POST" });
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({ error: expect.any(String) });
  });

  it("still serves the page and stays healthy", async () => {
    expect((await fetch(`${url}/`)).status).toBe(200);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });
});

describe("frontend container hardened as in production", () => {
  let url: string;

  beforeAll(async () => {
    url = await startFrontend("hardened", {
      backendPort: backend.port,
      counterPort: counter.port,
      // What a production override would set. The writable paths are tmpfs owned by
      // uid 101: /tmp (pid file), /var/cache/nginx (temp files), /etc/nginx/conf.d
      // (templates rendered at start).
      extraArgs: [
        ...["--user", "101", "--read-only", "--cap-drop", "ALL"],
        ...["--security-opt", "no-new-privileges"],
        ...["--tmpfs", "/tmp", "--tmpfs", "/var/cache/nginx:uid=101,gid=101"],
        ...["--tmpfs", "/etc/nginx/conf.d:uid=101,gid=101"],
      ],
    });
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
    expect(backend.last("/echo")?.bodyLength).toBeGreaterThan(40 * 1024);
  });
});
