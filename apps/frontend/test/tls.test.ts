// TLS=on: HTTPS with HTTP/2 and HSTS, the redirects from plain HTTP, the TLS versions.
// Without a working Docker these tests fail rather than skip.
import { copyFile, utimes } from "node:fs/promises";
import type { SecureVersion } from "node:tls";
import { eventually, http2Request, tlsHandshake } from "@app/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker, removeCreated } from "./support/docker.ts";
import { DATA } from "./support/fakes.ts";
import { backend } from "./support/fixture.ts";
import {
  CSP,
  HARDENED,
  httpsGet,
  rawRequest,
  startTlsFrontend,
  testCertificates,
} from "./support/frontend.ts";

afterAll(removeCreated);

describe("frontend container with TLS=on", () => {
  let httpUrl: string;
  let httpsPort: number;
  let ca: string;

  beforeAll(async () => {
    ({ httpUrl, httpsPort, ca } = await startTlsFrontend("tls"));
  });

  it("serves the page over HTTP/2 with HSTS; plain /healthz carries none", async () => {
    const page = await http2Request(`https://127.0.0.1:${httpsPort}`, "/", ca);
    expect(page.alpn).toBe("h2");
    expect(page.status).toBe(200);
    expect(page.headers["strict-transport-security"]).toBe("max-age=63072000");
    expect(page.headers["content-security-policy"]).toBe(CSP);
    expect(page.body).toContain("<title>Docker Compose visit counter</title>");

    // The container's health check stays on plain HTTP, not redirected.
    const healthz = await fetch(`${httpUrl}/healthz`);
    expect(healthz.status).toBe(200);
    expect(await healthz.text()).toBe("ok\n");
    expect(healthz.headers.get("strict-transport-security")).toBeNull();
  });

  it("redirects plain HTTP with a 308 to the public HTTPS port, path and query kept", async () => {
    const answer = await rawRequest(
      httpUrl,
      "GET /x?y=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    expect(answer.status).toBe(308);
    expect(answer.headers.location).toBe(`https://localhost:${httpsPort}/x?y=1`);
    expect(answer.headers["strict-transport-security"]).toBeUndefined();
  });

  it("answers a malformed request to the redirecting HTTP port in plain text", async () => {
    const answer = await rawRequest(httpUrl, "NONSENSE\r\n\r\n");
    expect(answer.status).toBe(400);
    expect(answer.headers["content-type"]).toBe("text/plain");
    expect(answer.body).toBe("Bad request\n");
  });

  it("redirects plain HTTP sent to the HTTPS port with a 308 to https", async () => {
    const answer = await rawRequest(
      `http://127.0.0.1:${httpsPort}`,
      "GET /x?y=1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    expect(answer.status).toBe(308);
    expect(answer.headers.location).toBe(`https://localhost:${httpsPort}/x?y=1`);
  });

  it("speaks TLS 1.2 and 1.3 only", async () => {
    const target = { host: "127.0.0.1", port: httpsPort, ca, servername: "localhost" };
    // Offers only `version`; SECLEVEL=0 lets Node's OpenSSL offer TLS 1.0/1.1 at all, so
    // a refusal is the server's, not the client's.
    const only = (version: SecureVersion) => ({
      minVersion: version,
      maxVersion: version,
      ciphers: "DEFAULT@SECLEVEL=0",
    });
    expect(await tlsHandshake(target)).toBe("TLSv1.3");
    expect(await tlsHandshake({ ...target, ...only("TLSv1.2") })).toBe("TLSv1.2");
    // Refused by the server (a protocol_version alert), not merely not offered by Node.
    await expect(tlsHandshake({ ...target, ...only("TLSv1.1") })).rejects.toMatchObject({
      code: expect.stringMatching(/ALERT_PROTOCOL_VERSION/),
    });
  });

  it("proxies /api/data over HTTPS to the backend, which learns the scheme", async () => {
    const res = await httpsGet(`https://127.0.0.1:${httpsPort}/api/data?tls=1`, ca);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual(DATA);
    expect(res.headers["strict-transport-security"]).toBe("max-age=63072000");
    const seen = await backend.last("/data?tls=1");
    expect(seen?.headers["x-forwarded-proto"]).toBe("https");
    expect(seen?.headers["x-request-id"]).toBe(res.headers["x-request-id"]);
  });
});

describe("frontend container with TLS=on hardened as in production", () => {
  let httpsPort: number;
  let ca: string;

  beforeAll(async () => {
    ({ httpsPort, ca } = await startTlsFrontend("tls-hardened", HARDENED));
  });

  it("reads the mounted certificate and key as uid 101 and serves HTTPS", async () => {
    const page = await http2Request(`https://127.0.0.1:${httpsPort}`, "/", ca);
    expect(page).toMatchObject({ alpn: "h2", status: 200 });
    const data = await http2Request(`https://127.0.0.1:${httpsPort}`, "/api/data", ca);
    expect(data.status).toBe(200);
    expect(JSON.parse(data.body)).toEqual(DATA);
  });
});

describe("frontend container with TLS=on: a renewed certificate", () => {
  it("serves a certificate copied over the mounted one after nginx -s reload", async () => {
    // As docs/PRODUCTION.md renews it: the new files are written into the mounted ones
    // (`cp`, same inode, so the container sees them), then `nginx -s reload`.
    const [files, renewed] = await Promise.all([testCertificates(), testCertificates()]);
    // On a reload nginx keeps the certificate and key it holds for a file whose inode and
    // mtime (whole seconds) are unchanged (ssl_object_cache_inheritable, on by default), and
    // `cp` keeps the inode. So the pair in use is dated an hour back, as a real certificate
    // is written long before its renewal; a copy in the same second would not be re-read.
    const anHourAgo = new Date(Date.now() - 3_600_000);
    await utimes(files.certificate, anHourAgo, anHourAgo);
    await utimes(files.key, anHourAgo, anHourAgo);
    const { httpsPort, container } = await startTlsFrontend("tls-renewal", [], files);
    const url = `https://127.0.0.1:${httpsPort}/healthz`;
    expect((await httpsGet(url, files.ca)).status).toBe(200);

    await copyFile(renewed.certificate, files.certificate);
    await copyFile(renewed.key, files.key);
    // Until the reload, nginx keeps the certificate it read at start.
    expect((await httpsGet(url, files.ca)).status).toBe(200);

    // A reload starts new workers with the new certificate and tells the old ones to stop
    // accepting and exit once their connections end; until each has closed its listening
    // sockets, it may still accept a connection with the old one. So the promise to wait
    // for is "every worker that ran before the reload has exited", not one new answer.
    const before = await nginxWorkers(container);
    expect(before.length).toBeGreaterThan(0);
    await docker("exec", container, "nginx", "-s", "reload");
    await eventually(async () => {
      const now = await nginxWorkers(container);
      expect(now.filter((pid) => before.includes(pid))).toEqual([]);
      expect(now.length).toBeGreaterThan(0);
    });
    // From then on, every new connection gets the renewed certificate.
    for (let i = 0; i < 10; i++) {
      expect((await httpsGet(url, renewed.ca)).status).toBe(200);
      await expect(httpsGet(url, files.ca)).rejects.toThrow(/self-signed|unable to (get|verify)/i);
    }
  });
});

/**
 * The PIDs of nginx's worker processes in the container: the nginx processes whose parent
 * is an nginx process too (the master's children), read from /proc (the image has no ps; a process that exits mid-read is left out).
 */
async function nginxWorkers(container: string): Promise<number[]> {
  const { stdout } = await docker(
    "exec",
    container,
    "sh",
    "-c",
    "cat /proc/[0-9]*/stat 2>/dev/null || true",
  );
  // Each line: "PID (COMM) STATE PPID ..."; COMM is "nginx" for master and workers alike.
  const nginx = new Map<number, number>();
  for (const line of stdout.split("\n")) {
    const match = /^(\d+) \(nginx\) \S+ (\d+) /.exec(line);
    if (match) nginx.set(Number(match[1]), Number(match[2]));
  }
  return [...nginx].filter(([, parent]) => nginx.has(parent)).map(([pid]) => pid);
}
