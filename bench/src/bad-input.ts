import { bodyKind, rawRequest } from "./raw.ts";

/** One malformed or hostile request, sent byte for byte through Nginx. */
export interface BadInput {
  label: string;
  request: (host: string) => string;
}

const MB = 1024 * 1024;
export const BAD_INPUTS: BadInput[] = [
  { label: "GET /api/nope (unknown API route)", request: (h) => get("/api/nope", h) },
  { label: "GET /api/visits/1 (unknown API route)", request: (h) => get("/api/visits/1", h) },
  { label: "GET /nope.html (unknown page)", request: (h) => get("/nope.html", h) },
  { label: "DELETE /api/visits (wrong method)", request: (h) => req("DELETE", "/api/visits", h) },
  { label: "PUT /api/data (wrong method)", request: (h) => req("PUT", "/api/data", h, "{}") },
  { label: "POST /api/healthz (wrong method)", request: (h) => req("POST", "/api/healthz", h) },
  { label: "POST / (wrong method, static)", request: (h) => req("POST", "/", h) },
  { label: "TRACE / (wrong method)", request: (h) => req("TRACE", "/", h) },
  {
    label: "POST /api/visits, 1 MB JSON body",
    request: (h) => req("POST", "/api/visits", h, `{"x":"${"a".repeat(MB - 8)}"}`),
  },
  {
    label: "POST /api/data, 1 MB JSON body",
    request: (h) => req("POST", "/api/data", h, `{"x":"${"a".repeat(MB - 8)}"}`),
  },
  { label: "POST /, 1 MB body", request: (h) => req("POST", "/", h, "a".repeat(MB)) },
  {
    label: "POST /api/visits, malformed JSON",
    request: (h) => req("POST", "/api/visits", h, '{"count": 1,'),
  },
  {
    label: "POST /api/visits, malformed Idempotency-Key",
    request: (h) => req("POST", "/api/visits", h, undefined, ["Idempotency-Key: not a key!"]),
  },
  {
    label: "POST /api/data, malformed JSON",
    request: (h) => req("POST", "/api/data", h, "{not json"),
  },
  { label: "GET /../../etc/passwd", request: (h) => get("/../../etc/passwd", h) },
  { label: "GET /api/../../etc/passwd", request: (h) => get("/api/../../etc/passwd", h) },
  {
    label: "GET /api/%2e%2e/%2e%2e/etc/passwd",
    request: (h) => get("/api/%2e%2e/%2e%2e/etc/passwd", h),
  },
  {
    label: "GET /api/..%2f..%2fetc%2fpasswd",
    request: (h) => get("/api/..%2f..%2fetc%2fpasswd", h),
  },
  {
    label: "GET /api/data, one 16 KB header",
    request: (h) => get("/api/data", h, [`X-Flood: ${"a".repeat(16 * 1024)}`]),
  },
  {
    label: "GET /api/data, 500 headers (~20 KB)",
    request: (h) =>
      get(
        "/api/data",
        h,
        Array.from({ length: 500 }, (_, i) => `X-Flood-${i}: ${"a".repeat(24)}`),
      ),
  },
  {
    label: "GET /api/data, 2000 headers (~70 KB)",
    request: (h) =>
      get(
        "/api/data",
        h,
        Array.from({ length: 2000 }, (_, i) => `X-Flood-${i}: ${"a".repeat(24)}`),
      ),
  },
  { label: "garbage request line", request: () => "HELLO?\r\n\r\n" },
];

function req(method: string, path: string, host: string, body?: string, extra: string[] = []) {
  const lines = [`${method} ${path} HTTP/1.1`, `Host: ${host}`, "Connection: close", ...extra];
  if (body !== undefined)
    lines.push("Content-Type: application/json", `Content-Length: ${Buffer.byteLength(body)}`);
  return `${lines.join("\r\n")}\r\n\r\n${body ?? ""}`;
}
const get = (path: string, host: string, extra: string[] = []) =>
  req("GET", path, host, undefined, extra);

export interface BadResult {
  label: string;
  status: number;
  kind: string;
  ok: boolean;
  note: string;
}

/**
 * Sends every bad input and classifies the answer: it must be a 4xx whose body is
 * JSON or plain text (never a 5xx, an HTML page, an empty body or no answer).
 */
export async function sendBadInput(url: string): Promise<BadResult[]> {
  const { port, host } = new URL(url);
  const results: BadResult[] = [];
  for (const input of BAD_INPUTS) {
    const response = await rawRequest(Number(port), input.request(host));
    const kind = bodyKind(response);
    const is4xx = response.status >= 400 && response.status < 500;
    const ok = is4xx && (kind === "json" || kind === "plain");
    const note =
      response.status >= 500
        ? "5xx"
        : !is4xx
          ? response.status === 0
            ? `no response (${response.error ?? "closed"})`
            : "not a 4xx"
          : ok
            ? ""
            : `body is ${kind}, not JSON or plain text`;
    results.push({ label: input.label, status: response.status, kind, ok, note });
  }
  return results;
}
