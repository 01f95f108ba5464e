import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePorts, type TestPki } from "@app/test-support";
import { Agent, fetch, type RequestInit, type Response } from "undici";
import { ComposeProject } from "./compose.ts";

const run = promisify(execFile);

/** The production files, in merge order. */
export const PROD_FILES = ["docker-compose.yml", "docker-compose.prod.yml"];

export interface ProductionStack {
  stack: ComposeProject;
  httpPort: number;
  httpsPort: number;
  /** https://localhost:<httpsPort>, the address the certificates are made for. */
  url: string;
  /** http://localhost:<httpPort>, which redirects to `url` (except /healthz). */
  httpUrl: string;
}

/**
 * The production stack from a copy of the repository (prepare it with
 * prepareProductionSecrets). Fixed free ports, because the frontend must know its public
 * HTTPS port for the redirect from HTTP (and so the address stays the same over down/up
 * and restarts). Rate limits off: every request of the tests comes from one address; a
 * test of the limits turns them on for itself. `extraFiles` go after the production
 * files (docker-compose.monitoring.yml).
 */
export async function productionStack(
  options: { extraFiles?: string[]; env?: Record<string, string> } = {},
): Promise<ProductionStack> {
  const [httpPort, httpsPort] = (await freePorts(2)) as [number, number];
  const stack = new ComposeProject({
    files: [...PROD_FILES, ...(options.extraFiles ?? [])],
    copyRepo: true,
    env: {
      FRONTEND_PORT: String(httpPort),
      FRONTEND_HTTPS_PORT: String(httpsPort),
      RATE_LIMIT: "off",
      ...options.env,
    },
  });
  return {
    stack,
    httpPort,
    httpsPort,
    url: `https://localhost:${httpsPort}`,
    httpUrl: `http://localhost:${httpPort}`,
  };
}

/**
 * Makes the copy and its secrets/ as docs/PRODUCTION.md's "First start" does: the
 * certificate (with `pki`, its server certificate and key; else none) first, then
 * `infra/init-secrets.sh HOST` for the rest (the passwords, a self-signed certificate
 * for HOST when there is none, and PUBLIC_HOST=HOST in the copy's .env).
 */
export async function prepareProductionSecrets(
  stack: ComposeProject,
  pki?: TestPki,
  host = "localhost",
) {
  await stack.prepare();
  if (pki) {
    const dir = join(stack.directory, "secrets");
    await mkdir(dir, { recursive: true });
    // The chain, server certificate first, as docs/PRODUCTION.md asks (an ACME client's
    // fullchain.pem). Here it ends with the test CA itself: Chromium's
    // --ignore-certificate-errors-spki-list (launchChromium's trustSpkiHashes) matches
    // only the certificates the server presents, so the CA's key must be among them.
    await writeFile(
      join(dir, "tls_certificate.pem"),
      `${pki.serverCertificate.trimEnd()}\n${pki.caCertificate}`,
      { mode: 0o600 },
    );
    await writeFile(join(dir, "tls_key.pem"), pki.serverKey, { mode: 0o600 });
  }
  // Keeps the certificate and key, creates the passwords, sets the modes.
  await run("bash", ["infra/init-secrets.sh", host], { cwd: stack.directory });
}

/** dns.lookup's callback, in both of its forms. */
type LookupCallback = (
  error: Error | null,
  address: string | { address: string; family: number }[],
  family?: number,
) => void;

/**
 * fetch (undici's) that resolves every host name to 127.0.0.1, as an /etc/hosts line on
 * the client would: a request for https://example.test:<port>/ reaches the stack with
 * that Host and SNI, no DNS needed. Trusts `ca`; `servername` overrides the name the
 * certificate is checked against (and sent as SNI), for a certificate made for another
 * name than the URL's.
 */
export function loopbackClient(ca: string, servername?: string) {
  const lookup = (_host: string, options: { all?: boolean }, callback: LookupCallback) => {
    if (options.all) callback(null, [{ address: "127.0.0.1", family: 4 }]);
    else callback(null, "127.0.0.1", 4);
  };
  const dispatcher = new Agent({ connect: { ca, lookup, ...(servername && { servername }) } });
  return {
    fetch: (url: string, init: RequestInit = {}): Promise<Response> =>
      fetch(url, { ...init, dispatcher }),
    close: () => dispatcher.destroy(),
  };
}
