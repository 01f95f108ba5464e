// Starting the frontend image, and the checks and clients the test files share.
import { chmod, mkdtemp, writeFile } from "node:fs/promises";
import type { IncomingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eventually, freePorts, makeTestPki } from "@app/test-support";
import { expect } from "vitest";
import { docker, type FrontendOptions, removeLater, runFrontend } from "./docker.ts";
import { IMAGE, network } from "./fixture.ts";

export const CSP =
  "default-src 'self'; base-uri 'self'; object-src 'none'; frame-ancestors 'none'; form-action 'self'";

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * What a production override sets. The writable paths are tmpfs owned by uid 101: /tmp
 * (pid file), /var/cache/nginx (temp files), /etc/nginx/conf.d (templates rendered at
 * start).
 */
export const HARDENED = [
  ...["--user", "101", "--read-only", "--cap-drop", "ALL"],
  ...["--security-opt", "no-new-privileges"],
  ...["--tmpfs", "/tmp", "--tmpfs", "/var/cache/nginx:uid=101,gid=101"],
  ...["--tmpfs", "/etc/nginx/conf.d:uid=101,gid=101"],
];

/**
 * Starts the image (runFrontend) on `network`, by default the shared one with the fake
 * services. The shared frontend (fixture.ts) serves tests that need the image's defaults.
 */
export function startFrontend(
  label: string,
  options: Omit<FrontendOptions, "network"> & { network?: string } = {},
): Promise<{ url: string; container: string }> {
  return runFrontend(IMAGE, label, { ...options, network: options.network ?? network });
}

// ---------------------------------------------------------------------------------
// TLS: a throwaway certificate and the image's secrets

interface CertificateFiles {
  dir: string;
  certificate: string;
  key: string;
  /** The certificate authority's PEM text, the clients' only trusted CA. */
  ca: string;
}

/**
 * A certificate for localhost and 127.0.0.1 from a new throwaway CA, and its key,
 * written to a temporary directory (removed with the containers). Both files are 0644
 * like Compose's file secrets, so nginx reads them also as uid 101.
 */
export async function testCertificates(): Promise<CertificateFiles> {
  const pki = await makeTestPki();
  const dir = await mkdtemp(join(tmpdir(), "app-frontend-test-tls-"));
  removeLater(dir);
  const certificate = join(dir, "certificate.pem");
  const key = join(dir, "key.pem");
  await writeFile(certificate, pki.serverCertificate);
  await writeFile(key, pki.serverKey);
  await chmod(certificate, 0o644);
  await chmod(key, 0o644);
  return { dir, certificate, key, ca: pki.caCertificate };
}

/** `docker run` options mounting the files read-only where the image expects its secrets. */
export function secretMounts(pair: { certificate?: string; key?: string }): string[] {
  const mounts: string[] = [];
  for (const [file, secret] of [
    [pair.certificate, "tls_certificate"],
    [pair.key, "tls_key"],
  ]) {
    if (file) {
      mounts.push("--mount", `type=bind,source=${file},target=/run/secrets/${secret},readonly`);
    }
  }
  return mounts;
}

/**
 * The frontend with TLS=on and the test's certificate (or `files`) as its secrets. Both
 * host ports are fixed and chosen first: the HTTP redirect must name the published HTTPS
 * port.
 */
export async function startTlsFrontend(
  label: string,
  extraArgs: string[] = [],
  files?: CertificateFiles,
) {
  files ??= await testCertificates();
  const [httpPort = 0, httpsPort = 0] = await freePorts(2);
  const { url: httpUrl, container } = await startFrontend(label, {
    env: { TLS: "on", PUBLIC_HTTPS_PORT: String(httpsPort) },
    publish: [`127.0.0.1:${httpPort}:8080`, `127.0.0.1:${httpsPort}:8443`],
    extraArgs: [...extraArgs, ...secretMounts(files)],
  });
  return { httpUrl, httpsPort, ca: files.ca, container };
}

// ---------------------------------------------------------------------------------
// Clients

/** fetch, and the body read as text. */
export async function fetchText(url: string, init?: RequestInit) {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
  return { res, body: await res.text() };
}

/** nginx's access log line for a request id (the log is flushed at least every second). */
export async function accessLogEntry(container: string, id: string | null) {
  return eventually(
    async () => {
      const { stdout } = await docker("logs", container);
      const found = stdout.split("\n").find((l) => l.includes(`"request_id":"${id}"`));
      if (!found) throw new Error(`no access log line for request ${id} in ${container}`);
      return JSON.parse(found) as Record<string, unknown>;
    },
    5_000,
    250,
  );
}

/**
 * Sends bytes as they are (fetch would refuse or repair a malformed request) and
 * returns the status code, the headers (lower-case names) and the body of the answer.
 */
export async function rawRequest(url: string, request: string) {
  const { hostname, port } = new URL(url);
  const answer = await new Promise<string>((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.end(request));
    const chunks: Buffer[] = [];
    socket.setTimeout(10_000, () => socket.destroy(new Error("no answer within 10 s")));
    socket.on("data", (chunk) => chunks.push(chunk));
    socket.on("end", () => resolve(Buffer.concat(chunks).toString("latin1")));
    socket.on("error", reject);
  });
  const [head = "", body = ""] = answer.split("\r\n\r\n", 2);
  const [statusLine = "", ...lines] = head.split("\r\n");
  const headers = Object.fromEntries(
    lines.map((line) => {
      const colon = line.indexOf(":");
      return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
    }),
  );
  return { status: Number(statusLine.split(" ")[1]), headers, body };
}

/** One HTTP/1.1 request over TLS (node:https offers no ALPN), trusting `ca`. */
export function httpsGet(
  url: string,
  ca: string,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on("error", reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error("no answer within 10 s")));
    req.on("error", reject);
    req.end();
  });
}

/**
 * Asserts the JSON 502 nginx answers for an upstream it cannot reach, and that it came
 * at once: both tries (the first and the second, snippets/site.conf) failed with a 502,
 * as nginx logged them. A try that waited for a connection would have ended in a 504
 * (proxy_connect_timeout) instead; no clock of this busy test machine is involved.
 */
export async function expectQuickJson502(
  answer: Awaited<ReturnType<typeof fetchText>>,
  container: string,
): Promise<void> {
  const { res, body } = answer;
  expect(res.status).toBe(502);
  expect(res.headers.get("content-type")).toBe("application/json");
  expect(res.headers.get("content-security-policy")).toBe(CSP);
  expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f]{32}$/);
  expect(JSON.parse(body)).toEqual({ error: expect.any(String) });
  const entry = await accessLogEntry(container, res.headers.get("x-request-id"));
  expect(entry).toMatchObject({ status: 502, upstream_status: "502 : 502" });
}
