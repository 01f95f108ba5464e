import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePorts, type TestPki } from "@app/test-support";
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
 * test of the limits turns them on for itself. `extraFiles`: more Compose files (a test's
 * own, written into the copy before it starts), merged last.
 */
export async function productionStack(extraFiles: string[] = []): Promise<ProductionStack> {
  const [httpPort, httpsPort] = (await freePorts(2)) as [number, number];
  const stack = new ComposeProject({
    files: [...PROD_FILES, ...extraFiles],
    copyRepo: true,
    env: {
      FRONTEND_PORT: String(httpPort),
      FRONTEND_HTTPS_PORT: String(httpsPort),
      RATE_LIMIT: "off",
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
 * infra/init-secrets.sh for the rest (the passwords, and a self-signed certificate for
 * localhost when there is none).
 */
export async function prepareProductionSecrets(stack: ComposeProject, pki?: TestPki) {
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
  await run("bash", ["infra/init-secrets.sh", "localhost"], { cwd: stack.directory });
}
