import { connect as http2Connect, type IncomingHttpHeaders } from "node:http2";
import { type ConnectionOptions, connect as tlsConnect } from "node:tls";
import { Agent, fetch, type RequestInit, type Response } from "undici";

/**
 * fetch (undici's) that trusts `ca`, as a client with the stack's CA installed would.
 * close() ends its connections: after the frontend was recreated, a new client starts
 * from fresh connections instead of ones the old container closed.
 */
export class TrustingClient {
  #dispatcher: Agent;
  readonly #ca: string;

  constructor(ca: string) {
    this.#ca = ca;
    this.#dispatcher = new Agent({ connect: { ca } });
  }

  fetch = (url: string, init: RequestInit = {}): Promise<Response> =>
    fetch(url, { ...init, dispatcher: this.#dispatcher });

  /** Drops every open connection; the next request connects anew. */
  async reconnect(): Promise<void> {
    const old = this.#dispatcher;
    this.#dispatcher = new Agent({ connect: { ca: this.#ca } });
    await old.destroy();
  }

  close(): Promise<void> {
    return this.#dispatcher.destroy();
  }
}

/** One HTTP/2 request over a fresh session: the negotiated ALPN protocol, status and headers. */
export async function http2Get(
  origin: string,
  path: string,
  ca: string,
): Promise<{ alpnProtocol: string | undefined; status: number; headers: IncomingHttpHeaders }> {
  const session = http2Connect(origin, { ca });
  try {
    return await new Promise((resolve, reject) => {
      session.once("error", reject);
      session.once("connect", () => {
        const request = session.request({ ":path": path });
        request.once("error", reject);
        request.once("response", (headers) => {
          request.resume();
          request.once("end", () =>
            resolve({
              alpnProtocol: session.alpnProtocol,
              status: Number(headers[":status"]),
              headers,
            }),
          );
        });
        request.end();
      });
    });
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
