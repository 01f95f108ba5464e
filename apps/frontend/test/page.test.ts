// The page and what nginx answers itself: security headers, compression, plain-text
// errors, hostile requests. Without a working Docker these tests fail rather than skip.
import { describe, expect, it } from "vitest";
import { backend, counter, frontend } from "./support/fixture.ts";
import { CSP, rawRequest } from "./support/frontend.ts";

describe("frontend container: page and its own answers", () => {
  const { url } = frontend;

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
        "POST /api/visits?malformed=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
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
});
