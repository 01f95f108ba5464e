// The /api/ reverse proxy to the (fake) backend and counter: forwarding headers, logs,
// keepalive, Idempotency-Key, limits and timeouts. Without a working Docker these tests
// fail rather than skip.
import { describe, expect, it } from "vitest";
import { DATA } from "./support/fakes.ts";
import { backend, counter, frontend } from "./support/fixture.ts";
import { accessLogEntry, CSP } from "./support/frontend.ts";

describe("frontend container: the API proxy", () => {
  const { url, container } = frontend;

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
    expect(await accessLogEntry(container, id)).toMatchObject({
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

  it("sends every visit with an Idempotency-Key: the client's, else the request id", async () => {
    const res = await fetch(`${url}/api/visits?key=none`, { method: "POST" });
    expect(res.status).toBe(200);
    const id = res.headers.get("x-request-id");
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    const seen = await counter.last("/visits?key=none");
    expect(seen?.headers["idempotency-key"]).toBe(id);
    expect(seen?.headers["x-request-id"]).toBe(id);

    const own = await fetch(`${url}/api/visits?key=client`, {
      method: "POST",
      headers: { "Idempotency-Key": "client-key-1" },
    });
    expect(own.status).toBe(200);
    const seenOwn = await counter.last("/visits?key=client");
    expect(seenOwn?.headers["idempotency-key"]).toBe("client-key-1");
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
    const res = await fetch(`${url}/api/slow?tries=1`);
    expect(res.status).toBe(504);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toEqual({ error: expect.any(String) });
    // Two tries, each given up after proxy_read_timeout (5 s).
    const tries = (await backend.received()).filter((r) => r.url === "/slow?tries=1");
    expect(tries).toHaveLength(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(9_000);
  });
});
