// The edge's boundaries: which hosts it answers for (PUBLIC_HOST), where its redirect
// points, the namespaces of the Idempotency-Keys it sends the counter, and the method its
// access log records for error-page answers. Without a working Docker these tests fail
// rather than skip.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { containerName, docker, dockerFails, ipOf, removeCreated } from "./support/docker.ts";
import { counter, IMAGE, network } from "./support/fixture.ts";
import { rawRequest, sleep, startFrontend, startTlsFrontend } from "./support/frontend.ts";

afterAll(removeCreated);

const PUBLIC_HOST = "www.example.test";
const get = (path: string, host: string) =>
  `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;

describe("served hosts (PUBLIC_HOST)", () => {
  let plain: string;
  let tls: { httpUrl: string; httpsPort: number; ca: string };
  /** Every listener: plain HTTP, the TLS frontend's redirecting HTTP port, its HTTPS. */
  const listeners = () => [plain, tls.httpUrl, `https://127.0.0.1:${tls.httpsPort}`];

  beforeAll(async () => {
    [{ url: plain }, tls] = await Promise.all([
      startFrontend("edge-plain", { env: { PUBLIC_HOST } }),
      startTlsFrontend("edge-tls", [], undefined, { PUBLIC_HOST }),
    ]);
  });

  it("answers the public host, localhost and 127.0.0.1, any case, with or without a port", async () => {
    const https = `https://127.0.0.1:${tls.httpsPort}`;
    for (const host of [PUBLIC_HOST, "WWW.Example.Test:8080", "localhost:8080", "127.0.0.1"]) {
      expect((await rawRequest(plain, get("/", host))).status, host).toBe(200);
      expect((await rawRequest(https, get("/", host), tls.ca)).status, host).toBe(200);
    }
  });

  it("refuses a foreign Host with a plain-text 421 on every listener, never naming it", async () => {
    for (const url of listeners()) {
      const answer = await rawRequest(url, get("/api/visits", "evil.example"), tls.ca);
      expect(answer.status, url).toBe(421);
      expect(answer.headers["content-type"], url).toBe("text/plain");
      expect(answer.headers["x-content-type-options"], url).toBe("nosniff");
      expect(answer.headers.location, url).toBeUndefined();
      expect(answer.body, url).not.toContain("evil");
    }
  });

  it("answers a foreign Host with a malformed body in plain text too, never nginx's HTML", async () => {
    const request =
      "POST /api/visits HTTP/1.1\r\nHost: evil.example\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    const answer = await rawRequest(plain, request);
    expect(answer.status).toBe(400);
    expect(answer.headers["content-type"]).toBe("text/plain");
    expect(answer.body).not.toContain("<html");
  });

  it("refuses an absolute-form URI for a foreign host, whatever the Host header says", async () => {
    const request = `GET http://evil.example/x HTTP/1.1\r\nHost: ${PUBLIC_HOST}\r\nConnection: close\r\n\r\n`;
    for (const url of listeners()) {
      const answer = await rawRequest(url, request, tls.ca);
      expect(answer.status, url).toBe(421);
      expect(answer.headers.location, url).toBeUndefined();
    }
  });

  it("refuses HTTP/1.0 without a Host (no redirect to https://_)", async () => {
    for (const url of listeners()) {
      const answer = await rawRequest(url, "GET / HTTP/1.0\r\n\r\n", tls.ca);
      expect(answer.status, url).toBe(421);
      expect(answer.headers.location, url).toBeUndefined();
    }
  });

  it("redirects to the public host, never the request's, with a 308 that is not cached", async () => {
    const origin = `https://${PUBLIC_HOST}:${tls.httpsPort}`;
    for (const host of [PUBLIC_HOST, "localhost", "127.0.0.1:8080"]) {
      const answer = await rawRequest(tls.httpUrl, get("/api/data?x=1", host));
      expect(answer.status, host).toBe(308);
      expect(answer.headers.location, host).toBe(`${origin}/api/data?x=1`);
      expect(answer.headers["cache-control"], host).toBe("no-store");
      expect(answer.headers["x-frame-options"], host).toBe("DENY");
    }
    // Plain HTTP sent to the HTTPS port: the same.
    const url = `http://127.0.0.1:${tls.httpsPort}`;
    const answer = await rawRequest(url, get("/x", "localhost"));
    expect(answer.status).toBe(308);
    expect(answer.headers.location).toBe(`${origin}/x`);
    expect(answer.headers["cache-control"]).toBe("no-store");
  });

  it("answers the health check for any host (the container's own probe)", async () => {
    expect((await rawRequest(plain, get("/healthz", "evil.example"))).status).toBe(200);
  });

  it("refuses a PUBLIC_HOST that is not a host name at start", async () => {
    const values = ["evil.example/x", "a b", "-x.example", "example.com:8443", "$host"];
    const runs = await Promise.all(
      values.map((value, i) =>
        dockerFails(
          ...["run", "--rm", "--name", containerName(`edge-refused-${i}`)],
          ...["--env", `PUBLIC_HOST=${value}`, IMAGE],
        ),
      ),
    );
    runs.forEach(({ code, stderr }, i) => {
      expect(code, values[i]).toBe(1);
      expect(stderr, values[i]).toContain("PUBLIC_HOST must be a host name such as example.com");
    });
  });

  // docker-compose.prod.yml passes an empty PUBLIC_HOST when none is set, so production
  // never serves the development default. `nginx -t` as the command: the entrypoint's
  // checks run before it, and a frontend that wrongly starts exits instead of serving.
  it("refuses an empty PUBLIC_HOST at start, saying what to set", async () => {
    const { code, stderr } = await dockerFails(
      ...["run", "--rm", "--name", containerName("edge-no-host")],
      ...["--env", "PUBLIC_HOST=", IMAGE, "nginx", "-t"],
    );
    expect(code).toBe(1);
    expect(stderr).toContain(
      "PUBLIC_HOST is empty: set it to the host name clients use, e.g. PUBLIC_HOST=example.com in .env",
    );
  });

  it("still serves an explicit PUBLIC_HOST=localhost", async () => {
    const { url } = await startFrontend("edge-localhost", { env: { PUBLIC_HOST: "localhost" } });
    expect((await rawRequest(url, get("/", "localhost"))).status).toBe(200);
    expect((await rawRequest(url, get("/", "example.com"))).status).toBe(421);
  });
});

describe("Idempotency-Key namespaces", () => {
  let url: string;
  let container: string;
  /** A visit tagged `tag`; resolves to the answer and the key the counter received. */
  const visit = async (tag: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${url}/api/visits?edge=${tag}`, { method: "POST", headers });
    const body = (await res.json()) as { error?: string };
    const key = (await counter.last(`/visits?edge=${tag}`))?.headers["idempotency-key"];
    return { res, body, key };
  };

  beforeAll(async () => {
    ({ url, container } = await startFrontend("edge-keys", { env: { RATE_LIMIT: "off" } }));
  });

  it("sends a visit without a key under Nginx's own n: prefix, which no client key can have", async () => {
    const { res, key } = await visit("own");
    expect(key).toBe(`n:${res.headers.get("x-request-id")}`);
    // A client trying to write one is refused, before the counter hears of it.
    const forged = await visit("forged", { "Idempotency-Key": String(key) });
    expect(forged.res.status).toBe(400);
    expect(forged.body.error).toMatch(/^Idempotency-Key must be 1 to 80 letters/);
    expect(forged.key).toBeUndefined();
  });

  it("makes X-Request-Id no replayable key: sent back as a key, it is a client's key", async () => {
    const first = await visit("first");
    const id = String(first.res.headers.get("x-request-id"));
    const replay = await visit("replay", { "Idempotency-Key": id });
    expect(replay.res.status).toBe(200);
    expect(replay.key).toMatch(new RegExp(`^c:[0-9.]+:${id}$`));
    expect(replay.key).not.toBe(first.key);
  });

  it("puts a client's key under the client's address: another client's same key is another key", async () => {
    const mine = await visit("mine", { "Idempotency-Key": "shared-key-1" });
    expect(mine.key).toMatch(/^c:[0-9.]+:shared-key-1$/);
    // Another client: the fake counter's container, another address on the network. Host:
    // localhost, a served name (the frontend's address is not one).
    const target = `http://${await ipOf(container, network)}:8080/api/visits?edge=theirs`;
    await docker(
      ...["exec", counter.container, "node", "-e"],
      `require("node:http").request(${JSON.stringify(target)}, { method: "POST",
        headers: { Host: "localhost", "Idempotency-Key": "shared-key-1" } },
        (res) => process.exit(res.statusCode === 200 ? 0 : 1)).end()`,
    );
    const theirs = (await counter.last("/visits?edge=theirs"))?.headers["idempotency-key"];
    expect(theirs).toBe(`c:${await ipOf(counter.container, network)}:shared-key-1`);
    expect(theirs).not.toBe(mine.key);
  });

  it("refuses a key with characters outside its namespace's alphabet, or too long", async () => {
    for (const [i, key] of ["c:1.2.3.4:x", "has space", "x".repeat(81), "semi;colon"].entries()) {
      const { res, body } = await visit(`bad-${i}`, { "Idempotency-Key": key });
      expect(res.status, key).toBe(400);
      expect(res.headers.get("content-type"), key).toBe("application/json");
      expect(body.error, key).toMatch(/Idempotency-Key/);
    }
    expect((await visit("longest", { "Idempotency-Key": "x".repeat(80) })).res.status).toBe(200);
  });
});

describe("access log", () => {
  it("records the request's own method for answers from error pages (429, 413, 421)", async () => {
    const { url, container } = await startFrontend("edge-log");
    // A 413 for a DELETE with a body over 64 KB, a 421 for a PUT to a foreign host, 429s
    // for a burst of POSTs over the visits limit (5/s, bursts of 10).
    const big = await fetch(`${url}/api/data`, { method: "DELETE", body: "x".repeat(70_000) });
    expect(big.status).toBe(413);
    const foreign = await rawRequest(
      url,
      "PUT /x HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    expect(foreign.status).toBe(421);
    const burst = await Promise.all(
      Array.from({ length: 30 }, () => fetch(`${url}/api/visits`, { method: "POST" })),
    );
    const limited = burst.filter((res) => res.status === 429);
    expect(limited.length).toBeGreaterThan(0);
    const ids = new Map([
      [big.headers.get("x-request-id"), "DELETE"],
      [foreign.headers["x-request-id"], "PUT"],
      ...limited.map((res) => [res.headers.get("x-request-id"), "POST"] as const),
    ]);
    // The access log is buffered and flushed at least every second.
    let lines: { request_id: string; method: string; status: number }[] = [];
    for (const deadline = Date.now() + 5_000; Date.now() < deadline; await sleep(250)) {
      const { stdout } = await docker("logs", container);
      lines = stdout
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line))
        .filter((line) => ids.has(line.request_id));
      if (lines.length === ids.size) break;
    }
    expect(lines).toHaveLength(ids.size);
    for (const line of lines) expect(line.method, `${line.status}`).toBe(ids.get(line.request_id));
    expect(new Set(lines.map((line) => line.status))).toEqual(new Set([413, 421, 429]));
  });
});
