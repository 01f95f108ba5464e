// Builds the frontend image and checks the nginx configuration for real, in Docker.
// nginx resolves the service names while it runs through Docker's embedded DNS, which
// ignores /etc/hosts (`--add-host`), so the services behind the proxy are faked by tiny
// Node HTTP servers in containers on user-defined networks created by the test, reached
// by their network aliases ("backend", "counter") like the real services in Compose.
// Without a working Docker these tests fail rather than skip.
import { execFile as execFileCallback } from "node:child_process";
import { once } from "node:events";
import { chmod, copyFile, mkdtemp, readFile, rm } from "node:fs/promises";
import type { IncomingHttpHeaders } from "node:http";
import {
  type IncomingHttpHeaders as Http2Headers,
  connect as http2Connect,
  type IncomingHttpStatusHeader,
} from "node:http2";
import { request as httpsRequest } from "node:https";
import { type AddressInfo, connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type SecureVersion, connect as tlsConnect } from "node:tls";
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
const tempDirs: string[] = [];

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

/**
 * Runs the docker CLI for a command that is meant to fail: returns its exit code and
 * output instead of rejecting. Still rejects when docker itself could not run (missing
 * binary, timeout), so the test fails rather than passing on a broken setup.
 */
async function dockerFails(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    return { code: 0, ...(await docker(...args)) };
  } catch (error) {
    const failure = error as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof failure.code !== "number") throw error;
    return { code: failure.code, stdout: failure.stdout ?? "", stderr: failure.stderr ?? "" };
  }
}

/** Loopback ports free right now (all listened on at once, so they are distinct). */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<Server>((resolve, reject) => {
          const server = createServer();
          server.once("error", reject);
          server.listen(0, "127.0.0.1", () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((server) => (server.address() as AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

// ---------------------------------------------------------------------------------
// TLS: a throwaway certificate and clients that trust it

interface CertificatePair {
  dir: string;
  certificate: string;
  key: string;
  /** The certificate's PEM text, the clients' only trusted CA. */
  ca: string;
}

let certificatePair: Promise<CertificatePair> | undefined;

/**
 * A self-signed certificate for localhost and 127.0.0.1 (valid one day) and its key, made
 * once per run in a temporary directory (removed in afterAll). Both files are 0644 like
 * Compose's file secrets, so nginx reads them also as uid 101.
 */
function selfSignedPair(): Promise<CertificatePair> {
  certificatePair ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), "app-frontend-test-tls-"));
    tempDirs.push(dir);
    const certificate = join(dir, "certificate.pem");
    const key = join(dir, "key.pem");
    await execFile("openssl", [
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
      ...["-nodes", "-days", "1", "-subj", "/CN=localhost"],
      ...["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
      ...["-keyout", key, "-out", certificate],
    ]);
    await chmod(certificate, 0o644);
    await chmod(key, 0o644);
    return { dir, certificate, key, ca: await readFile(certificate, "utf8") };
  })();
  return certificatePair;
}

/** `docker run` options mounting the pair read-only where the image expects its secrets. */
function secretMounts(pair: { certificate?: string; key?: string }): string[] {
  const mounts: string[] = [];
  for (const [file, secret] of [
    [pair.certificate, "tls_certificate"],
    [pair.key, "tls_key"],
  ]) {
    if (file) {
      mounts.push("--mount", `type=bind,source=${file},target=/run/secrets/${secret},readonly`);
    }
  }
  return mounts;
}

/** One request over HTTP/2 (the client offers only h2), trusting `ca`. */
async function h2Request(origin: string, ca: string, path: string) {
  const session = http2Connect(origin, { ca });
  // Errors reach the awaited events below; this keeps a late one from going unhandled.
  session.on("error", () => {});
  try {
    await once(session, "connect");
    const stream = session.request({ ":path": path });
    stream.setTimeout(10_000, () => stream.close());
    const [headers] = (await once(stream, "response")) as [Http2Headers & IncomingHttpStatusHeader];
    stream.setEncoding("utf8");
    let body = "";
    for await (const chunk of stream) body += chunk;
    return { alpn: session.alpnProtocol, status: headers[":status"], headers, body };
  } finally {
    session.close();
  }
}

/** One HTTP/1.1 request over TLS (node:https offers no ALPN), trusting `ca`. */
function httpsGet(
  url: string,
  ca: string,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on("error", reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error("no answer within 10 s")));
    req.on("error", reject);
    req.end();
  });
}

/**
 * A TLS handshake with 127.0.0.1:port offering only `version` (by default whatever Node
 * offers); resolves with the negotiated protocol. SECLEVEL=0 lets Node's OpenSSL offer
 * TLS 1.0/1.1 at all, so a refusal is the server's, not the client's.
 */
function tlsHandshake(port: number, ca: string, version?: SecureVersion): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(
      {
        host: "127.0.0.1",
        port,
        ca,
        servername: "localhost",
        ...(version
          ? { minVersion: version, maxVersion: version, ciphers: "DEFAULT@SECLEVEL=0" }
          : {}),
      },
      () => {
        const protocol = socket.getProtocol() ?? "";
        socket.end();
        resolve(protocol);
      },
    );
    socket.setTimeout(10_000, () => socket.destroy(new Error("no handshake within 10 s")));
    socket.on("error", reject);
  });
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
 * loopback port (or as `publish` says), waits for the image's HEALTHCHECK to pass,
 * returns the base URL (of 8080).
 */
async function startFrontend(
  label: string,
  options: {
    network: string;
    env?: Record<string, string>;
    extraArgs?: string[];
    /** `--publish` values; 8080 must be among them. */
    publish?: string[];
  },
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
    ...(options.publish ?? ["127.0.0.1::8080"]).flatMap((publish) => ["--publish", publish]),
    ...(options.extraArgs ?? []),
    IMAGE,
  );
  await waitForHealthy(container);
  return { url: `http://127.0.0.1:${await publishedPort(container, "8080/tcp")}`, container };
}

/**
 * The frontend with TLS=on and the test's certificate pair as its secrets. Both host ports
 * are fixed and chosen first: the HTTP redirect must name the published HTTPS port.
 */
async function startTlsFrontend(label: string, extraArgs: string[] = []) {
  const pair = await selfSignedPair();
  const [httpPort = 0, httpsPort = 0] = await freePorts(2);
  const { url: httpUrl } = await startFrontend(label, {
    network,
    env: { TLS: "on", PUBLIC_HTTPS_PORT: String(httpsPort) },
    publish: [`127.0.0.1:${httpPort}:8080`, `127.0.0.1:${httpsPort}:8443`],
    extraArgs: [...extraArgs, ...secretMounts(pair)],
  });
  return { httpUrl, httpsPort, ca: pair.ca };
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

/**
 * What a production override sets. The writable paths are tmpfs owned by uid 101: /tmp
 * (pid file), /var/cache/nginx (temp files), /etc/nginx/conf.d (templates rendered at
 * start).
 */
const HARDENED = [
  ...["--user", "101", "--read-only", "--cap-drop", "ALL"],
  ...["--security-opt", "no-new-privileges"],
  ...["--tmpfs", "/tmp", "--tmpfs", "/var/cache/nginx:uid=101,gid=101"],
  ...["--tmpfs", "/etc/nginx/conf.d:uid=101,gid=101"],
];

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
  for (const dir of tempDirs) await rm(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------
// Reading `nginx -T`

/** The files `nginx -T` dumped, by path ("# configuration file <path>:" headers). */
function dumpedFiles(dump: string): Map<string, string> {
  const parts = dump.split(/^# configuration file (.+):$/m);
  const files = new Map<string, string>();
  for (let i = 1; i + 1 < parts.length; i += 2) files.set(parts[i] ?? "", parts[i + 1] ?? "");
  return files;
}

/** The configuration without comments, and with quoted strings emptied (their braces). */
function stripped(config: string): string {
  return config.replace(/#.*$/gm, "").replace(/'[^']*'|"[^"]*"/g, '""');
}

/** The error_page directives outside any block of a file: status -> URI. */
function topLevelErrorPages(config: string): Map<number, string> {
  const pages = new Map<number, string>();
  let depth = 0;
  let statement = "";
  for (const char of stripped(config)) {
    if (char === "{" || char === "}") {
      depth += char === "{" ? 1 : -1;
      statement = "";
    } else if (char === ";") {
      const [directive, ...args] = statement.trim().split(/\s+/);
      const uri = args.pop() ?? "";
      if (depth === 0 && directive === "error_page") {
        for (const code of args) pages.set(Number(code), uri);
      }
      statement = "";
    } else {
      statement += char;
    }
  }
  return pages;
}

/** The files a config includes outside any block. */
function topLevelIncludes(config: string): string[] {
  let depth = 0;
  const includes: string[] = [];
  for (const statement of stripped(config).split(/(?<=[;{}])/)) {
    const include = /^\s*include\s+(\S+);$/.exec(statement)?.[1];
    if (depth === 0 && include) includes.push(include);
    if (statement.endsWith("{")) depth++;
    if (statement.endsWith("}")) depth--;
  }
  return includes;
}

/** The status each exact-match location answers with `return`: URI -> status. */
function returnedStatuses(config: string): Map<string, number> {
  const statuses = new Map<string, number>();
  for (const [, uri = "", body = ""] of stripped(config).matchAll(
    /location\s*=\s*(\S+)\s*\{([^{}]*)\}/g,
  )) {
    const status = /\breturn\s+(\d{3})\b/.exec(body)?.[1];
    if (status) statuses.set(uri, Number(status));
  }
  return statuses;
}

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
      /upstream backend \{\s+zone backend 64k;\s+server api\.internal:4001 resolve max_fails=1 fail_timeout=1s;\s+keepalive 32;\s+keepalive_timeout 2s;/,
    );
    expect(stdout).toMatch(
      /upstream counter \{\s+zone counter 64k;\s+server visits\.internal:4002 resolve max_fails=1 fail_timeout=1s;\s+keepalive 32;\s+keepalive_timeout 2s;/,
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

  it("has a plain-text or JSON answer for every status nginx raises itself", async () => {
    const { stdout } = await docker("run", "--rm", IMAGE, "nginx", "-T");
    const files = dumpedFiles(stdout);
    const site = files.get("/etc/nginx/snippets/site.conf") ?? "";
    const errorPages = files.get("/etc/nginx/snippets/error-pages.conf") ?? "";
    const api = files.get("/etc/nginx/snippets/api-proxy.conf") ?? "";
    // site.conf is the body of the server block; api-proxy.conf of each /api/ location.
    expect(files.get("/etc/nginx/site/http.conf")).toMatch(
      /server\s*\{[^}]*include \/etc\/nginx\/snippets\/site\.conf;[^}]*\}/,
    );
    // error-pages.conf sits at server level in site.conf and in the TLS redirect server
    // (https.conf, read from the source: nginx -T dumps only what TLS=off includes).
    expect(topLevelIncludes(site)).toContain("/etc/nginx/snippets/error-pages.conf");
    const https = await readFile(join(CONTEXT, "nginx/site/https.conf"), "utf8");
    expect(stripped(https)).toMatch(
      /server\s*\{[^{}]*include \/etc\/nginx\/snippets\/error-pages\.conf;/,
    );
    // The URI is rewritten in the locations, not in what their second try includes too.
    for (const proxy of ["visits-proxy", "backend-proxy"]) {
      expect(stripped(files.get(`/etc/nginx/snippets/${proxy}.conf`) ?? ""), proxy).not.toMatch(
        /\brewrite\b/,
      );
    }
    // Each /api/ location and its second try include the way to their service, which
    // includes api-proxy.conf.
    for (const proxy of ["visits-proxy", "backend-proxy"]) {
      const uses = stripped(site).match(
        new RegExp(`include /etc/nginx/snippets/${proxy}\\.conf;`, "g"),
      );
      expect(uses, proxy).toHaveLength(2);
      expect(files.get(`/etc/nginx/snippets/${proxy}.conf`), proxy).toContain(
        "include /etc/nginx/snippets/api-proxy.conf;",
      );
    }
    // 502 and 504: a second try first, then the JSON page.
    expect(stripped(site)).toContain("error_page 502 504 = @visits_again;");
    expect(stripped(site)).toContain("error_page 502 504 = @backend_again;");
    expect(stripped(site).match(/error_page 502 \/\.errors\/api\/502;/g)).toHaveLength(2);
    expect(stripped(site).match(/error_page 504 \/\.errors\/api\/504;/g)).toHaveLength(2);

    // Server level: every status to a plain-text page of the same status.
    const serverPages = topLevelErrorPages(errorPages);
    const answers = returnedStatuses(errorPages);
    const serverStatuses = [
      400, 403, 404, 405, 408, 411, 412, 413, 414, 416, 429, 500, 501, 502, 503, 504, 505,
    ];
    for (const status of serverStatuses) {
      expect({ status, page: serverPages.get(status) }).toEqual({
        status,
        page: `/.errors/${status}`,
      });
      expect({ status, answer: answers.get(`/.errors/${status}`) }).toEqual({
        status,
        answer: status,
      });
    }
    // Headers over large_client_header_buffers (494) are answered as a 400.
    expect(serverPages.get(494)).toBe("/.errors/400");

    // The /api/ locations: their own error_page set (none is inherited), JSON pages.
    const apiPages = topLevelErrorPages(api);
    const apiStatuses = [400, 408, 411, 413, 429, 500, 501, 503];
    expect([...apiPages.keys()].sort()).toEqual(apiStatuses);
    expect(answers.get("/.errors/api/502")).toBe(502);
    expect(answers.get("/.errors/api/504")).toBe(504);
    for (const status of apiStatuses) {
      expect({ status, page: apiPages.get(status) }).toEqual({
        status,
        page: `/.errors/api/${status}`,
      });
      expect({ status, answer: answers.get(`/.errors/api/${status}`) }).toEqual({
        status,
        answer: status,
      });
    }
  });
});

describe("frontend settings", () => {
  it("refuses bad settings at start with one message per problem", async () => {
    const name = `app-frontend-test-bad-settings-${RUN_ID}`;
    containers.push(name);
    const { code, stderr } = await dockerFails(
      ...["run", "--rm", "--name", name],
      ...["--env", "TLS=maybe", "--env", "RATE_LIMIT=x"],
      ...[
        "--env",
        "TRUSTED_PROXIES=1.2.3.4 bad! cafe 10.0.0.0/33 * fd00::/8",
        "--env",
        "PUBLIC_HTTPS_PORT=0",
      ],
      IMAGE,
    );
    // The container's own exit code (docker's are 125-127).
    expect(code).toBe(1);
    expect(stderr).toContain("Invalid configuration for frontend:");
    const problems = stderr.split("\n").filter((line) => line.startsWith("  - "));
    expect(problems).toEqual([
      "  - TLS must be on or off, got 'maybe'",
      "  - RATE_LIMIT must be on or off, got 'x'",
      "  - PUBLIC_HTTPS_PORT must be 1-65535, got '0'",
      "  - TRUSTED_PROXIES: 'bad!' is not an IPv4 or IPv6 address or CIDR",
      "  - TRUSTED_PROXIES: 'cafe' is not an IPv4 or IPv6 address or CIDR",
      "  - TRUSTED_PROXIES: '10.0.0.0/33' is not an IPv4 or IPv6 address or CIDR",
      "  - TRUSTED_PROXIES: '*' is not an IPv4 or IPv6 address or CIDR",
    ]);
  });

  it("refuses TLS=on without the certificate and key, naming each missing secret", async () => {
    const none = `app-frontend-test-no-secrets-${RUN_ID}`;
    containers.push(none);
    const missing = await dockerFails("run", "--rm", "--name", none, "--env", "TLS=on", IMAGE);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("TLS=on needs the secret tls_certificate");
    expect(missing.stderr).toContain("TLS=on needs the secret tls_key");

    // Only the certificate: only the key is named.
    const pair = await selfSignedPair();
    const keyless = `app-frontend-test-no-key-${RUN_ID}`;
    containers.push(keyless);
    const noKey = await dockerFails(
      ...["run", "--rm", "--name", keyless, "--env", "TLS=on"],
      ...secretMounts({ certificate: pair.certificate }),
      IMAGE,
    );
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).not.toContain("secret tls_certificate");
    expect(noKey.stderr).toContain(
      "TLS=on needs the secret tls_key (/run/secrets/tls_key is missing or unreadable)",
    );
  });

  it("refuses a key that uid 101 cannot read when run as in production", async () => {
    const pair = await selfSignedPair();
    // Owned by the test's user, mode 0600: unreadable for uid 101 without capabilities.
    const privateKey = join(pair.dir, "private-key.pem");
    await copyFile(pair.key, privateKey);
    await chmod(privateKey, 0o600);
    const name = `app-frontend-test-private-key-${RUN_ID}`;
    containers.push(name);
    const { code, stderr } = await dockerFails(
      ...["run", "--rm", "--name", name, "--env", "TLS=on", ...HARDENED],
      ...secretMounts({ certificate: pair.certificate, key: privateKey }),
      IMAGE,
    );
    expect(code).toBe(1);
    expect(stderr).not.toContain("secret tls_certificate");
    expect(stderr).toContain("TLS=on needs the secret tls_key");
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
    // HSTS only over HTTPS (TLS=on, below); a plain-HTTP answer must not carry it.
    expect(res.headers.get("strict-transport-security")).toBeNull();
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

  it("answers the other statuses it raises itself in plain text, or JSON under /api/", async () => {
    const cases: Array<[string, string, number, string, string]> = [
      [
        // Only "chunked" is implemented; nginx refuses before it has found a location.
        "an unknown Transfer-Encoding",
        "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        501,
        "text/plain",
        "Not implemented\n",
      ],
      [
        "HTTP/3.0 on the request line",
        "GET / HTTP/3.0\r\nHost: x\r\n\r\n",
        505,
        "text/plain",
        "HTTP version not supported\n",
      ],
      [
        // Found while reading the body, so by the /api/visits location: JSON.
        "a malformed chunked body",
        "POST /api/visits?malformed=1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        "application/json",
        '{"error":"Bad request"}\n',
      ],
    ];
    for (const [what, request, status, type, body] of cases) {
      const answer = await rawRequest(url, request);
      expect({ what, status: answer.status, body: answer.body }).toEqual({ what, status, body });
      expect(answer.headers["content-type"], what).toBe(type);
      expect(answer.body, what).not.toContain("<html");
      expect(answer.headers["content-security-policy"], what).toBe(CSP);
      expect(answer.headers["x-request-id"], what).toMatch(/^[0-9a-f]{32}$/);
    }
    // The malformed visit was refused before the counter.
    expect((await counter.received()).some((r) => r.url.includes("malformed"))).toBe(false);
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
    // The client's key reaches the counter (in the client's namespace, see edge.test.ts),
    // which recognises a retry by it.
    expect(seen?.headers["idempotency-key"]).toMatch(/^c:[0-9.]+:visit-1$/);

    const withQuery = await fetch(`${url}/api/visits?source=test`, { method: "POST" });
    expect(withQuery.status).toBe(200);
    expect(await counter.last("/visits?source=test")).toMatchObject({ method: "POST" });
    expect((await backend.received()).length).toBe(before);
  });

  it("sends every visit with an Idempotency-Key: the client's, else one from the request id", async () => {
    const res = await fetch(`${url}/api/visits?key=none`, { method: "POST" });
    expect(res.status).toBe(200);
    const id = res.headers.get("x-request-id");
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    const seen = await counter.last("/visits?key=none");
    expect(seen?.headers["idempotency-key"]).toBe(`n:${id}`);
    expect(seen?.headers["x-request-id"]).toBe(id);

    const own = await fetch(`${url}/api/visits?key=client`, {
      method: "POST",
      headers: { "Idempotency-Key": "client-key-1" },
    });
    expect(own.status).toBe(200);
    const seenOwn = await counter.last("/visits?key=client");
    expect(seenOwn?.headers["idempotency-key"]).toMatch(/^c:[0-9.]+:client-key-1$/);
    // The request id is still nginx's own.
    expect(seenOwn?.headers["x-request-id"]).toBe(own.headers.get("x-request-id"));
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

  it("answers a JSON 504 when the backend does not respond: 5 s, tried twice", async () => {
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
      extraArgs: HARDENED,
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

describe("frontend container with TLS=on", () => {
  let httpUrl: string;
  let httpsPort: number;
  let ca: string;

  beforeAll(async () => {
    ({ httpUrl, httpsPort, ca } = await startTlsFrontend("tls"));
  });

  it("serves the page over HTTP/2 with HSTS; plain /healthz carries none", async () => {
    const page = await h2Request(`https://127.0.0.1:${httpsPort}`, ca, "/");
    expect(page.alpn).toBe("h2");
    expect(page.status).toBe(200);
    expect(page.headers["strict-transport-security"]).toBe("max-age=63072000");
    expect(page.headers["content-security-policy"]).toBe(CSP);
    expect(page.body).toContain("<title>Docker Compose visit counter</title>");

    // The container's health check stays on plain HTTP, not redirected.
    const healthz = await fetch(`${httpUrl}/healthz`);
    expect(healthz.status).toBe(200);
    expect(await healthz.text()).toBe("ok\n");
    expect(healthz.headers.get("strict-transport-security")).toBeNull();
  });

  it("redirects plain HTTP with a 308 to the public HTTPS port, path and query kept", async () => {
    const answer = await rawRequest(
      httpUrl,
      "GET /x?y=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    expect(answer.status).toBe(308);
    expect(answer.headers.location).toBe(`https://localhost:${httpsPort}/x?y=1`);
    expect(answer.headers["strict-transport-security"]).toBeUndefined();
  });

  it("answers a malformed request to the redirecting HTTP port in plain text", async () => {
    const answer = await rawRequest(httpUrl, "NONSENSE\r\n\r\n");
    expect(answer.status).toBe(400);
    expect(answer.headers["content-type"]).toBe("text/plain");
    expect(answer.body).toBe("Bad request\n");
  });

  it("redirects plain HTTP sent to the HTTPS port with a 308 to https", async () => {
    const answer = await rawRequest(
      `http://127.0.0.1:${httpsPort}`,
      "GET /x?y=1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    expect(answer.status).toBe(308);
    expect(answer.headers.location).toBe(`https://localhost:${httpsPort}/x?y=1`);
  });

  it("speaks TLS 1.2 and 1.3 only", async () => {
    expect(await tlsHandshake(httpsPort, ca)).toBe("TLSv1.3");
    expect(await tlsHandshake(httpsPort, ca, "TLSv1.2")).toBe("TLSv1.2");
    // Refused by the server (a protocol_version alert), not merely not offered by Node.
    await expect(tlsHandshake(httpsPort, ca, "TLSv1.1")).rejects.toMatchObject({
      code: expect.stringMatching(/ALERT_PROTOCOL_VERSION/),
    });
  });

  it("proxies /api/data over HTTPS to the backend, which learns the scheme", async () => {
    const res = await httpsGet(`https://127.0.0.1:${httpsPort}/api/data?tls=1`, ca);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual(DATA);
    expect(res.headers["strict-transport-security"]).toBe("max-age=63072000");
    const seen = await backend.last("/data?tls=1");
    expect(seen?.headers["x-forwarded-proto"]).toBe("https");
    expect(seen?.headers["x-request-id"]).toBe(res.headers["x-request-id"]);
  });
});

describe("frontend container with TLS=on hardened as in production", () => {
  let httpsPort: number;
  let ca: string;

  beforeAll(async () => {
    ({ httpsPort, ca } = await startTlsFrontend("tls-hardened", HARDENED));
  });

  it("reads the mounted certificate and key as uid 101 and serves HTTPS", async () => {
    const page = await h2Request(`https://127.0.0.1:${httpsPort}`, ca, "/");
    expect(page).toMatchObject({ alpn: "h2", status: 200 });
    const data = await h2Request(`https://127.0.0.1:${httpsPort}`, ca, "/api/data");
    expect(data.status).toBe(200);
    expect(JSON.parse(data.body)).toEqual(DATA);
  });
});

describe("frontend container rate limits", () => {
  let limited: string;
  let unlimited: string;

  /** `count` requests at once; the answers in order. */
  function burst(count: number, url: (i: number) => string, init?: RequestInit) {
    return Promise.all(Array.from({ length: count }, (_, i) => timedFetch(url(i), init)));
  }

  beforeAll(async () => {
    [{ url: limited }, { url: unlimited }] = await Promise.all([
      startFrontend("limited", { network }), // RATE_LIMIT=on, the image's default
      startFrontend("unlimited", { network, env: { RATE_LIMIT: "off" } }),
    ]);
  });

  it("answers visits over 5/s (bursts of 10) with a JSON 429 and Retry-After", async () => {
    const answers = await burst(30, (i) => `${limited}/api/visits?burst=${i}`, {
      method: "POST",
    });
    const ok = answers.filter((a) => a.res.status === 200);
    const refused = answers.filter((a) => a.res.status === 429);
    expect(ok.length + refused.length).toBe(30);
    // The burst of 10 on top of the first request always gets through.
    expect(ok.length).toBeGreaterThanOrEqual(11);
    expect(refused.length).toBeGreaterThan(0);
    for (const { res, body } of refused) {
      expect(res.headers.get("content-type")).toBe("application/json");
      expect(JSON.parse(body)).toEqual({ error: expect.any(String) });
      expect(res.headers.get("retry-after")).toBe("1");
      expect(res.headers.get("content-security-policy")).toBe(CSP);
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("referrer-policy")).toBe("no-referrer");
      expect(res.headers.get("x-frame-options")).toBe("DENY");
      expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f]{32}$/);
    }
    // Refused visits never reached the counter.
    const counted = (await counter.received()).filter((r) => r.url.startsWith("/visits?burst="));
    expect(counted).toHaveLength(ok.length);
  });

  it("never limits a client sending one visit every 250 ms", async () => {
    // Let the bucket the previous burst filled drain (10 excess at 5/s).
    await sleep(2_500);
    const started = Date.now();
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) {
      await sleep(started + i * 250 - Date.now());
      const res = await fetch(`${limited}/api/visits?paced=${i}`, { method: "POST" });
      statuses.push(res.status);
      await res.body?.cancel();
    }
    expect(statuses).toEqual(Array(10).fill(200));
  });

  it("limits the rest of the API more loosely: 20/s, bursts of 40", async () => {
    const answers = await burst(60, (i) => `${limited}/api/data?burst=${i}`);
    const ok = answers.filter((a) => a.res.status === 200).length;
    const refused = answers.filter((a) => a.res.status === 429);
    expect(ok + refused.length).toBe(60);
    expect(ok).toBeGreaterThanOrEqual(41);
    expect(refused.length).toBeGreaterThan(0);
    expect(JSON.parse(refused[0]?.body ?? "")).toEqual({ error: expect.any(String) });
  });

  it("limits nothing with RATE_LIMIT=off", async () => {
    const answers = await burst(60, (i) => `${unlimited}/api/visits?unlimited=${i}`, {
      method: "POST",
    });
    expect(answers.map((a) => a.res.status)).toEqual(Array(60).fill(200));
    const counted = (await counter.received()).filter((r) =>
      r.url.startsWith("/visits?unlimited="),
    );
    expect(counted).toHaveLength(60);
  });
});

describe("frontend container with a counter replica failing visits", () => {
  let url: string;
  let failing: Fake;
  let working: Fake;

  beforeAll(async () => {
    const net = await createNetwork("retry");
    const counterFake = { network: net, alias: "counter", port: 3002 };
    [failing, working] = await Promise.all([
      startFake({
        ...counterFake,
        name: "failing",
        // A 502 (a gateway of its own failing): Nginx tries the next replica. The
        // counter's own 503 (PostgreSQL unreachable) is passed on instead, tested below.
        routes: { "POST /visits": { status: 502, body: { error: "bad gateway" } } },
      }),
      startFake({ ...counterFake, name: "working", routes: COUNTER_ROUTES }),
    ]);
    ({ url } = await startFrontend("retry", { network: net }));
  });

  it("sends a visit again to the other replica, with the same Idempotency-Key", async () => {
    // Round-robin: within two visits one goes to the failing replica first.
    const refusedByFailing = async () =>
      (await failing.received()).find((r) => r.url.startsWith("/visits?retry="));
    for (let i = 0; i < 10 && !(await refusedByFailing()); i++) {
      const res = await fetch(`${url}/api/visits?retry=${i}`, { method: "POST" });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ count: 42 });
      expect(res.headers.get("x-served-by")).toBe("working");
    }
    const first = await refusedByFailing();
    expect(first).toMatchObject({ method: "POST" });
    const again = (await working.received()).find((r) => r.url === first?.url);
    expect(again).toMatchObject({ method: "POST" });
    expect(first?.headers["idempotency-key"]).toMatch(/^n:[0-9a-f]{32}$/);
    expect(again?.headers["idempotency-key"]).toBe(first?.headers["idempotency-key"]);
  });
});

describe("frontend container with a counter answering 503 (PostgreSQL unreachable)", () => {
  let url: string;

  beforeAll(async () => {
    const net = await createNetwork("unavailable");
    await startFake({
      network: net,
      alias: "counter",
      port: 3002,
      name: "unavailable",
      routes: { "POST /visits": { status: 503, body: { error: "Visit counter unavailable" } } },
    });
    ({ url } = await startFrontend("unavailable", { network: net }));
  });

  it("passes the counter's own 503 on, with its JSON body, without trying again", async () => {
    const res = await fetch(`${url}/api/visits`, { method: "POST" });
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ error: "Visit counter unavailable" });
  });
});

describe("frontend container behind a trusted proxy (TRUSTED_PROXIES)", () => {
  const FORWARDED = { "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https" };
  let untrusting: string;
  let trusting: string;
  let trustingContainer: string;
  /** The address the test's requests come from, as the containers see it. */
  let peer: string;

  /** The headers the backend got for GET /api/data?<tag> carrying FORWARDED. */
  async function forwardedHeaders(url: string, tag: string): Promise<IncomingHttpHeaders> {
    const res = await fetch(`${url}/api/data?${tag}`, { headers: FORWARDED });
    expect(res.status).toBe(200);
    return (await backend.last(`/data?${tag}`))?.headers ?? {};
  }

  beforeAll(async () => {
    ({ url: untrusting } = await startFrontend("untrusting", { network }));
    // nginx tells the backend the peer it saw (X-Real-IP).
    await fetch(`${untrusting}/api/data?peer=1`);
    peer = String((await backend.last("/data?peer=1"))?.headers["x-real-ip"]);
    expect(peer).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    ({ url: trusting, container: trustingContainer } = await startFrontend("trusting", {
      network,
      env: { TRUSTED_PROXIES: peer },
    }));
  });

  it("ignores X-Forwarded-For and -Proto when no proxy is trusted", async () => {
    const headers = await forwardedHeaders(untrusting, "trusted=none");
    expect(headers["x-real-ip"]).toBe(peer);
    expect(headers["x-forwarded-proto"]).toBe("http");
    expect(headers["x-forwarded-for"]).toBe(`203.0.113.9, ${peer}`);
  });

  it("takes the client address and scheme from a trusted proxy", async () => {
    const headers = await forwardedHeaders(trusting, "trusted=peer");
    expect(headers["x-real-ip"]).toBe("203.0.113.9");
    expect(headers["x-forwarded-proto"]).toBe("https");
  });

  it("still ignores them from any other address", async () => {
    // From the fake backend's container: an address on the network that is not trusted.
    const target = `http://${await ipOf(trustingContainer, network)}:8080/api/data?trusted=other`;
    // Host: a name the frontend serves (its address is not one, see edge.test.ts).
    await docker(
      ...["exec", backend.container, "node", "-e"],
      `require("node:http").get(${JSON.stringify(target)}, { headers: ${JSON.stringify({ ...FORWARDED, Host: "localhost" })} },
        (res) => process.exit(res.statusCode === 200 ? 0 : 1))`,
    );
    const headers = (await backend.last("/data?trusted=other"))?.headers ?? {};
    expect(headers["x-real-ip"]).toBe(await ipOf(backend.container, network));
    expect(headers["x-forwarded-proto"]).toBe("http");
  });
});
