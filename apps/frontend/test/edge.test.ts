// The edge's boundaries, in Docker (fails without it): which hosts it answers for
// (PUBLIC_HOST), where its redirect points, the namespaces of the Idempotency-Keys it
// sends the counter, and the method its access log records for error-page answers.
// The counter behind it is a fake that answers each visit with the key and request id
// it received.
import { execFile as execFileCallback } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const execFile = promisify(execFileCallback);
const NGINX_IMAGE = process.env.NGINX_IMAGE || "nginx:1.30";
const NODE_IMAGE = process.env.NODE_IMAGE ?? "node:24-trixie-slim";
const CONTEXT = fileURLToPath(new URL("..", import.meta.url));
const RUN = `app-frontend-edge-${process.pid}-${Date.now().toString(36)}`;
const IMAGE = `${RUN}:test`;
const PUBLIC_HOST = "www.example.test";

const docker = (...args: string[]) =>
  execFile("docker", args, { timeout: 180_000, maxBuffer: 16 * 1024 * 1024 });

/** The fake counter: every answer is the Idempotency-Key and X-Request-Id it received. */
const FAKE_COUNTER = `
require("node:http").createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ key: req.headers["idempotency-key"] ?? null, id: req.headers["x-request-id"] }));
  });
}).listen(3002);
process.on("SIGTERM", () => process.exit(0));`;

let network = "";
let certDir = "";
const containers: string[] = [];

/** Runs the image with `env` on the network; resolves once its health check passes. */
async function startFrontend(name: string, env: Record<string, string>, extra: string[] = []) {
  const container = `${RUN}-${name}`;
  containers.push(container);
  await docker(
    ...["run", "--detach", "--name", container, "--network", network],
    ...Object.entries(env).flatMap(([key, value]) => ["--env", `${key}=${value}`]),
    ...["--publish", "127.0.0.1::8080", "--publish", "127.0.0.1::8443", ...extra, IMAGE],
  );
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { stdout } = await docker("inspect", "--format", "{{.State.Health.Status}}", container);
    if (stdout.trim() === "healthy") break;
    if (Date.now() > deadline)
      throw new Error(`${container}: ${(await docker("logs", container)).stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const port = async (target: number) =>
    Number(/:(\d+)\s*$/.exec((await docker("port", container, String(target))).stdout)?.[1]);
  return { container, http: await port(8080), https: await port(8443) };
}

/**
 * Sends `request` as it is, over TLS when `tls` (no certificate check: the host names
 * are what is tested), and returns the status line's code and the headers.
 */
function raw(port: number, request: string, tls = false) {
  return new Promise<{ status: number; headers: Record<string, string>; body: string }>(
    (resolve, reject) => {
      const socket = tls
        ? tlsConnect({
            port,
            host: "127.0.0.1",
            rejectUnauthorized: false,
            servername: "localhost",
          })
        : connect(port, "127.0.0.1");
      socket.once(tls ? "secureConnect" : "connect", () => socket.end(request));
      const chunks: Buffer[] = [];
      socket.on("data", (chunk: Buffer) => chunks.push(chunk));
      socket.on("end", () => {
        const [head = "", body = ""] = Buffer.concat(chunks).toString("latin1").split("\r\n\r\n");
        const [status = "", ...lines] = head.split("\r\n");
        const headers = Object.fromEntries(
          lines.map((line) => [
            line.slice(0, line.indexOf(":")).toLowerCase(),
            line.slice(line.indexOf(":") + 1).trim(),
          ]),
        );
        resolve({ status: Number(status.split(" ")[1]), headers, body });
      });
      socket.on("error", reject);
      socket.setTimeout(10_000, () => socket.destroy(new Error("no answer within 10 s")));
    },
  );
}

const get = (path: string, host: string) =>
  `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;

beforeAll(async () => {
  network = `${RUN}-net`;
  certDir = await mkdtemp(join(tmpdir(), `${RUN}-`));
  await execFile("openssl", [
    ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
    ...[
      "-days",
      "1",
      "-subj",
      `/CN=${PUBLIC_HOST}`,
      "-addext",
      `subjectAltName=DNS:${PUBLIC_HOST}`,
    ],
    ...["-keyout", join(certDir, "key.pem"), "-out", join(certDir, "cert.pem")],
  ]);
  await execFile("chmod", ["644", join(certDir, "key.pem"), join(certDir, "cert.pem")]);
  await docker("network", "create", network);
  containers.push(`${RUN}-counter`);
  await Promise.all([
    docker("build", "--quiet", "--build-arg", `NGINX_IMAGE=${NGINX_IMAGE}`, "-t", IMAGE, CONTEXT),
    docker(
      ...["run", "--detach", "--name", `${RUN}-counter`, "--network", network],
      ...["--network-alias", "counter", NODE_IMAGE, "node", "-e", FAKE_COUNTER],
    ),
  ]);
});

afterAll(async () => {
  if (containers.length > 0) await docker("rm", "--force", ...containers).catch(() => {});
  await docker("network", "rm", network).catch(() => {});
  await docker("image", "rm", "--force", IMAGE).catch(() => {});
  if (certDir) await rm(certDir, { recursive: true, force: true });
});

describe("served hosts (PUBLIC_HOST)", () => {
  let plain: { http: number };
  let tls: { http: number; https: number };
  /** Every listener: plain HTTP, the TLS frontend's redirecting HTTP port and its HTTPS. */
  const listeners = () =>
    [
      [plain.http, false],
      [tls.http, false],
      [tls.https, true],
    ] as const;

  beforeAll(async () => {
    [plain, tls] = await Promise.all([
      startFrontend("plain", { PUBLIC_HOST }),
      startFrontend("tls", { PUBLIC_HOST, TLS: "on", PUBLIC_HTTPS_PORT: "8443" }, [
        ...[
          "--mount",
          `type=bind,source=${join(certDir, "cert.pem")},target=/run/secrets/tls_certificate,readonly`,
        ],
        ...[
          "--mount",
          `type=bind,source=${join(certDir, "key.pem")},target=/run/secrets/tls_key,readonly`,
        ],
      ]),
    ]);
  });

  it("answers the public host, localhost and 127.0.0.1, any case, with or without a port", async () => {
    for (const host of [
      PUBLIC_HOST,
      "WWW.Example.Test:8080",
      "localhost",
      "localhost:8080",
      "127.0.0.1",
    ]) {
      expect((await raw(plain.http, get("/", host))).status, host).toBe(200);
      expect((await raw(tls.https, get("/", host), true)).status, host).toBe(200);
    }
  });

  it("refuses a foreign Host with a plain-text 421 on every listener, never naming it", async () => {
    for (const [port, secure] of listeners()) {
      const answer = await raw(port, get("/api/visits", "evil.example"), secure);
      expect(answer.status, `${port}`).toBe(421);
      expect(answer.headers["content-type"]).toBe("text/plain");
      expect(answer.headers["x-content-type-options"]).toBe("nosniff");
      expect(answer.headers.location).toBeUndefined();
      expect(answer.body).not.toContain("evil");
    }
  });

  it("refuses an absolute-form URI for a foreign host, whatever the Host header says", async () => {
    const request = `GET http://evil.example/x HTTP/1.1\r\nHost: ${PUBLIC_HOST}\r\nConnection: close\r\n\r\n`;
    for (const [port, secure] of listeners()) {
      const answer = await raw(port, request, secure);
      expect(answer.status, `${port}`).toBe(421);
      expect(answer.headers.location).toBeUndefined();
    }
  });

  it("refuses HTTP/1.0 without a Host (no redirect to https://_)", async () => {
    for (const [port, secure] of listeners()) {
      const answer = await raw(port, "GET / HTTP/1.0\r\n\r\n", secure);
      expect(answer.status, `${port}`).toBe(421);
      expect(answer.headers.location).toBeUndefined();
    }
  });

  it("redirects to the public host, never the request's, with a 308 that is not cached", async () => {
    for (const host of [PUBLIC_HOST, "localhost", "127.0.0.1:8080"]) {
      const answer = await raw(tls.http, get("/api/data?x=1", host));
      expect(answer.status, host).toBe(308);
      expect(answer.headers.location, host).toBe(`https://${PUBLIC_HOST}:8443/api/data?x=1`);
      expect(answer.headers["cache-control"], host).toBe("no-store");
      expect(answer.headers["x-frame-options"], host).toBe("DENY");
    }
    // Plain HTTP sent to the HTTPS port: the same.
    const answer = await raw(tls.https, get("/x", "localhost"));
    expect(answer.status).toBe(308);
    expect(answer.headers.location).toBe(`https://${PUBLIC_HOST}:8443/x`);
    expect(answer.headers["cache-control"]).toBe("no-store");
  });

  it("answers the health check for any host (the container's own probe)", async () => {
    expect((await raw(plain.http, get("/healthz", "evil.example"))).status).toBe(200);
  });

  it("refuses a PUBLIC_HOST that is not a host name at start", async () => {
    const values = ["evil.example/x", "a b", "-x.example", "example.com:8443", "$host"];
    const runs = await Promise.all(
      values.map((value, i) => {
        // Named, so afterAll removes it should it ever start serving.
        const name = `${RUN}-refused-${i}`;
        containers.push(name);
        return docker("run", "--rm", "--name", name, "--env", `PUBLIC_HOST=${value}`, IMAGE).then(
          () => ({ value, code: 0, stderr: "" }),
          (error: { code?: number; stderr?: string }) => ({
            value,
            code: error.code,
            stderr: error.stderr ?? "",
          }),
        );
      }),
    );
    for (const { value, code, stderr } of runs) {
      expect(code, value).toBe(1);
      expect(stderr, value).toContain("PUBLIC_HOST must be a host name such as example.com");
    }
  });
});

describe("Idempotency-Key namespaces", () => {
  let edge: { container: string; http: number };
  const url = () => `http://127.0.0.1:${edge.http}/api/visits`;
  const visit = async (headers: Record<string, string> = {}) => {
    const res = await fetch(url(), { method: "POST", headers });
    return { res, body: (await res.json()) as { key: string; id: string; error?: string } };
  };

  beforeAll(async () => {
    edge = await startFrontend("keys", { RATE_LIMIT: "off" });
  });

  it("sends a visit without a key under Nginx's own n: prefix, which no client key can have", async () => {
    const { res, body } = await visit();
    expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f]{32}$/);
    expect(body.key).toBe(`n:${res.headers.get("x-request-id")}`);
    // A client trying to write one is refused, before the counter hears of it.
    const forged = await visit({ "Idempotency-Key": body.key });
    expect(forged.res.status).toBe(400);
    expect(forged.body.error).toMatch(/^Idempotency-Key must be 1 to 80 letters/);
  });

  it("makes X-Request-Id no replayable key: sent back as a key, it is a client's key", async () => {
    const first = await visit();
    const id = String(first.res.headers.get("x-request-id"));
    const replay = await visit({ "Idempotency-Key": id });
    expect(replay.res.status).toBe(200);
    expect(replay.body.key).toMatch(new RegExp(`^c:[0-9.]+:${id}$`));
    expect(replay.body.key).not.toBe(first.body.key);
  });

  it("puts a client's key under the client's address: another client's same key is another key", async () => {
    const mine = await visit({ "Idempotency-Key": "shared-key-1" });
    expect(mine.body.key).toMatch(/^c:[0-9.]+:shared-key-1$/);
    // Another client: a container on the network, so another address.
    const address = (
      await docker(
        "inspect",
        "--format",
        `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`,
        edge.container,
      )
    ).stdout.trim();
    const { stdout } = await docker(
      ...["run", "--rm", "--network", network, NODE_IMAGE, "node", "-e"],
      // Host: localhost, a served name (the container's address is not one).
      `require("node:http").request({ host: "${address}", port: 8080, path: "/api/visits", method: "POST",
        headers: { Host: "localhost", "Idempotency-Key": "shared-key-1" } },
        (res) => { let text = ""; res.on("data", (c) => (text += c)); res.on("end", () => console.log(text)); }).end()`,
    );
    const theirs = JSON.parse(stdout) as { key: string };
    expect(theirs.key).toMatch(/^c:[0-9.]+:shared-key-1$/);
    expect(theirs.key).not.toBe(mine.body.key);
  });

  it("refuses a key with characters outside its namespace's alphabet, or too long", async () => {
    for (const key of ["c:1.2.3.4:x", "has space", "x".repeat(81), "semi;colon"]) {
      const { res, body } = await visit({ "Idempotency-Key": key });
      expect(res.status, key).toBe(400);
      expect(res.headers.get("content-type"), key).toBe("application/json");
      expect(body.error, key).toMatch(/Idempotency-Key/);
    }
    expect((await visit({ "Idempotency-Key": "x".repeat(80) })).res.status).toBe(200);
  });
});

describe("access log", () => {
  it("records the request's own method for answers from error pages (429, 413, 421)", async () => {
    const { container, http } = await startFrontend("log", {});
    const base = `http://127.0.0.1:${http}`;
    // A 413 for a DELETE with a body over 64 KB, a 421 for a PUT to a foreign host, 429s
    // for a burst of POSTs over the visits limit (5/s, bursts of 10).
    const big = await fetch(`${base}/api/data`, { method: "DELETE", body: "x".repeat(70_000) });
    expect(big.status).toBe(413);
    const foreign = await raw(
      http,
      `PUT /x HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
    );
    expect(foreign.status).toBe(421);
    const burst = await Promise.all(
      Array.from({ length: 30 }, () => fetch(`${base}/api/visits`, { method: "POST" })),
    );
    const limited = burst.filter((res) => res.status === 429);
    expect(limited.length).toBeGreaterThan(0);
    const ids = new Map([
      [big.headers.get("x-request-id"), "DELETE"],
      [foreign.headers["x-request-id"], "PUT"],
      ...limited.map((res) => [res.headers.get("x-request-id"), "POST"] as const),
    ]);
    // The access log is buffered and flushed at least every second.
    const deadline = Date.now() + 5_000;
    let lines: { request_id: string; method: string; status: number }[] = [];
    while (Date.now() < deadline) {
      const { stdout } = await docker("logs", container);
      lines = stdout
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line))
        .filter((line) => ids.has(line.request_id));
      if (lines.length === ids.size) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(lines).toHaveLength(ids.size);
    for (const line of lines) expect(line.method, `${line.status}`).toBe(ids.get(line.request_id));
    expect(new Set(lines.map((line) => line.status))).toEqual(new Set([413, 421, 429]));
  });
});
