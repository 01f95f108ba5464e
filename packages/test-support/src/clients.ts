import { once } from "node:events";
import {
  connect as http2Connect,
  type IncomingHttpHeaders,
  type IncomingHttpStatusHeader,
} from "node:http2";
import { type ConnectionOptions, connect as tlsConnect } from "node:tls";

/**
 * One request over a fresh HTTP/2 session (the client offers only h2), trusting `ca`: the
 * negotiated ALPN protocol, the status, the headers and the body.
 */
export async function http2Request(origin: string, path: string, ca: string) {
  const session = http2Connect(origin, { ca });
  // Errors reach the awaited events below; this keeps a late one from going unhandled.
  session.on("error", () => {});
  try {
    await once(session, "connect");
    const stream = session.request({ ":path": path });
    stream.setTimeout(10_000, () => stream.close());
    const [headers] = (await once(stream, "response")) as [
      IncomingHttpHeaders & IncomingHttpStatusHeader,
    ];
    stream.setEncoding("utf8");
    let body = "";
    for await (const chunk of stream) body += chunk;
    return { alpn: session.alpnProtocol, status: Number(headers[":status"]), headers, body };
  } finally {
    session.close();
  }
}

/** A TLS handshake only: resolves with the negotiated protocol version, rejects if refused. */
export function tlsHandshake(options: ConnectionOptions): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(options, () => {
      const protocol = socket.getProtocol();
      socket.end();
      resolve(protocol);
    });
    socket.once("error", reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error("TLS handshake timed out")));
  });
}
