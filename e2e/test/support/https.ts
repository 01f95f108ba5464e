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
