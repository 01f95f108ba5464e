import { connect } from "node:net";

export interface RawResponse {
  /** 0 when no status line came back. */
  status: number;
  headers: Record<string, string>;
  body: string;
  /** A socket error, if the connection failed before a full response. */
  error?: string | undefined;
}

/**
 * Sends bytes exactly as given (malformed request lines, `..` paths, header floods:
 * things fetch() refuses to send) and reads the response until the server closes.
 */
export function rawRequest(port: number, request: string, timeoutMs = 5_000): Promise<RawResponse> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    const chunks: Buffer[] = [];
    let error: string | undefined;
    const finish = () => {
      clearTimeout(timer);
      resolve({ ...parse(Buffer.concat(chunks)), error });
    };
    const timer = setTimeout(() => {
      error = `no complete response within ${timeoutMs} ms`;
      socket.destroy();
    }, timeoutMs);
    socket.on("connect", () => {
      // The server may answer (413, 400) and close before it reads a large body:
      // write errors are expected then, the response is what counts.
      socket.write(request, () => {});
    });
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", (e: NodeJS.ErrnoException) => {
      error ??= e.code ?? e.message;
    });
    socket.on("close", finish);
  });
}

function parse(raw: Buffer): Omit<RawResponse, "error"> {
  const text = raw.toString("latin1");
  const headerEnd = text.indexOf("\r\n\r\n");
  const head = headerEnd >= 0 ? text.slice(0, headerEnd) : text;
  const [statusLine = "", ...headerLines] = head.split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(":");
    if (colon > 0)
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = headerEnd >= 0 ? raw.subarray(Buffer.byteLength(head, "latin1") + 4) : Buffer.alloc(0);
  if (/chunked/i.test(headers["transfer-encoding"] ?? "")) body = dechunk(body);
  return { status, headers, body: body.toString("utf8") };
}

function dechunk(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const lineEnd = body.indexOf("\r\n", offset);
    if (lineEnd < 0) break;
    const size = Number.parseInt(body.subarray(offset, lineEnd).toString("latin1"), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/** What kind of body a response has: json (and it parses), plain, html, empty, or its type. */
export function bodyKind(response: RawResponse): string {
  const type = (response.headers["content-type"] ?? "").toLowerCase();
  if (response.body.trim() === "") return "empty";
  if (type.includes("json")) {
    try {
      JSON.parse(response.body);
      return "json";
    } catch {
      return "invalid json";
    }
  }
  if (type.startsWith("text/plain")) return "plain";
  if (type.startsWith("text/html")) return "html";
  return type || "no content-type";
}
