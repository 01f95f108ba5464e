// The image's nginx configuration (`nginx -t`, `nginx -T`) and its start-up checks of the
// settings. Without a working Docker these tests fail rather than skip.
import { chmod, copyFile, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { containerName, docker, dockerFails, removeCreated } from "./support/docker.ts";
import { IMAGE, network } from "./support/fixture.ts";
import { HARDENED, secretMounts, testCertificates } from "./support/frontend.ts";
import {
  dumpedFiles,
  returnedStatuses,
  stripped,
  topLevelErrorPages,
  topLevelIncludes,
} from "./support/nginx-config.ts";

const CONTEXT = fileURLToPath(new URL("..", import.meta.url));

afterAll(removeCreated);
describe("nginx configuration", () => {
  it("passes nginx -t without the services being resolvable", async () => {
    // No backend or counter anywhere: names are only resolved when a request comes.
    const { stderr } = await docker("run", "--rm", IMAGE, "nginx", "-t");
    expect(stderr).toContain("syntax is ok");
    expect(stderr).toContain("test is successful");
  });

  it("renders upstreams and resolver from the environment, leaves nginx variables alone", async () => {
    const { stdout } = await docker(
      "run",
      "--rm",
      ...["--network", network],
      ...["--env", "BACKEND_UPSTREAM=api.internal:4001"],
      ...["--env", "COUNTER_UPSTREAM=visits.internal:4002"],
      // A variable named like one of nginx's must not be substituted.
      ...["--env", "host=clobbered"],
      IMAGE,
      "nginx",
      "-T",
    );
    // Upstreams that keep their addresses up to date (`resolve`) and idle connections open.
    expect(stdout).toMatch(
      /upstream backend \{\s+zone backend 64k;\s+server api\.internal:4001 resolve max_fails=1 fail_timeout=1s;\s+keepalive 32;\s+keepalive_timeout 2s;/,
    );
    expect(stdout).toMatch(
      /upstream counter \{\s+zone counter 64k;\s+server visits\.internal:4002 resolve max_fails=1 fail_timeout=1s;\s+keepalive 32;\s+keepalive_timeout 2s;/,
    );
    expect(stdout).toContain("proxy_pass http://backend;");
    expect(stdout).toContain("proxy_pass http://counter;");
    expect(stdout).toContain("proxy_http_version 1.1;");
    // The entrypoint took the nameserver from resolv.conf: Docker's embedded DNS.
    expect(stdout).toContain("resolver 127.0.0.11 valid=2s ipv6=off;");
    expect(stdout).toContain("proxy_set_header Host $host;");
    expect(stdout).not.toContain("clobbered");
    expect(stdout).not.toContain("${");
  });

  it("has a plain-text or JSON answer for every status nginx raises itself", async () => {
    const { stdout } = await docker("run", "--rm", IMAGE, "nginx", "-T");
    const files = dumpedFiles(stdout);
    const site = files.get("/etc/nginx/snippets/site.conf") ?? "";
    const errorPages = files.get("/etc/nginx/snippets/error-pages.conf") ?? "";
    const api = files.get("/etc/nginx/snippets/api-proxy.conf") ?? "";
    // site.conf is the body of the server block; api-proxy.conf of each /api/ location.
    expect(files.get("/etc/nginx/site/http.conf")).toMatch(
      /server\s*\{[^}]*include \/etc\/nginx\/snippets\/site\.conf;[^}]*\}/,
    );
    // error-pages.conf sits at server level in site.conf and in the TLS redirect server
    // (https.conf, read from the source: nginx -T dumps only what TLS=off includes).
    expect(topLevelIncludes(site)).toContain("/etc/nginx/snippets/error-pages.conf");
    const https = await readFile(join(CONTEXT, "nginx/site/https.conf"), "utf8");
    expect(stripped(https)).toMatch(
      /server\s*\{[^{}]*include \/etc\/nginx\/snippets\/error-pages\.conf;/,
    );
    // The URI is rewritten in the locations, not in what their second try includes too.
    for (const proxy of ["visits-proxy", "backend-proxy"]) {
      expect(stripped(files.get(`/etc/nginx/snippets/${proxy}.conf`) ?? ""), proxy).not.toMatch(
        /\brewrite\b/,
      );
    }
    // Each /api/ location and its second try include the way to their service, which
    // includes api-proxy.conf.
    for (const proxy of ["visits-proxy", "backend-proxy"]) {
      const uses = stripped(site).match(
        new RegExp(`include /etc/nginx/snippets/${proxy}\\.conf;`, "g"),
      );
      expect(uses, proxy).toHaveLength(2);
      expect(files.get(`/etc/nginx/snippets/${proxy}.conf`), proxy).toContain(
        "include /etc/nginx/snippets/api-proxy.conf;",
      );
    }
    // 502 and 504: a second try first, then the JSON page.
    expect(stripped(site)).toContain("error_page 502 504 = @visits_again;");
    expect(stripped(site)).toContain("error_page 502 504 = @backend_again;");
    expect(stripped(site).match(/error_page 502 \/\.errors\/api\/502;/g)).toHaveLength(2);
    expect(stripped(site).match(/error_page 504 \/\.errors\/api\/504;/g)).toHaveLength(2);

    // Server level: every status to a plain-text page of the same status.
    const serverPages = topLevelErrorPages(errorPages);
    const answers = returnedStatuses(errorPages);
    const serverStatuses = [
      400, 403, 404, 405, 408, 411, 412, 413, 414, 416, 429, 500, 501, 502, 503, 504, 505,
    ];
    for (const status of serverStatuses) {
      expect({ status, page: serverPages.get(status) }).toEqual({
        status,
        page: `/.errors/${status}`,
      });
      expect({ status, answer: answers.get(`/.errors/${status}`) }).toEqual({
        status,
        answer: status,
      });
    }
    // Headers over large_client_header_buffers (494) are answered as a 400.
    expect(serverPages.get(494)).toBe("/.errors/400");

    // The /api/ locations: their own error_page set (none is inherited), JSON pages.
    const apiPages = topLevelErrorPages(api);
    const apiStatuses = [400, 408, 411, 413, 429, 500, 501, 503];
    expect([...apiPages.keys()].sort()).toEqual(apiStatuses);
    expect(answers.get("/.errors/api/502")).toBe(502);
    expect(answers.get("/.errors/api/504")).toBe(504);
    for (const status of apiStatuses) {
      expect({ status, page: apiPages.get(status) }).toEqual({
        status,
        page: `/.errors/api/${status}`,
      });
      expect({ status, answer: answers.get(`/.errors/api/${status}`) }).toEqual({
        status,
        answer: status,
      });
    }
  });
});

describe("frontend settings", () => {
  it("refuses bad settings at start with one message per problem", async () => {
    const name = containerName("bad-settings");
    const { code, stderr } = await dockerFails(
      ...["run", "--rm", "--name", name],
      ...["--env", "TLS=maybe", "--env", "RATE_LIMIT=x"],
      ...[
        "--env",
        "TRUSTED_PROXIES=1.2.3.4 bad! cafe 10.0.0.0/33 * fd00::/8",
        "--env",
        "PUBLIC_HTTPS_PORT=0",
      ],
      IMAGE,
    );
    // The container's own exit code (docker's are 125-127).
    expect(code).toBe(1);
    expect(stderr).toContain("Invalid configuration for frontend:");
    const problems = stderr.split("\n").filter((line) => line.startsWith("  - "));
    expect(problems).toEqual([
      "  - TLS must be on or off, got 'maybe'",
      "  - RATE_LIMIT must be on or off, got 'x'",
      "  - PUBLIC_HTTPS_PORT must be 1-65535, got '0'",
      "  - TRUSTED_PROXIES: 'bad!' is not an IPv4 or IPv6 address or CIDR",
      "  - TRUSTED_PROXIES: 'cafe' is not an IPv4 or IPv6 address or CIDR",
      "  - TRUSTED_PROXIES: '10.0.0.0/33' is not an IPv4 or IPv6 address or CIDR",
      "  - TRUSTED_PROXIES: '*' is not an IPv4 or IPv6 address or CIDR",
    ]);
  });

  it("refuses TLS=on without the certificate and key, naming each missing secret", async () => {
    const none = containerName("no-secrets");
    const missing = await dockerFails("run", "--rm", "--name", none, "--env", "TLS=on", IMAGE);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("TLS=on needs the secret tls_certificate");
    expect(missing.stderr).toContain("TLS=on needs the secret tls_key");

    // Only the certificate: only the key is named.
    const pair = await testCertificates();
    const keyless = containerName("no-key");
    const noKey = await dockerFails(
      ...["run", "--rm", "--name", keyless, "--env", "TLS=on"],
      ...secretMounts({ certificate: pair.certificate }),
      IMAGE,
    );
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).not.toContain("secret tls_certificate");
    expect(noKey.stderr).toContain(
      "TLS=on needs the secret tls_key (/run/secrets/tls_key is missing or unreadable)",
    );
  });

  it("refuses a key that uid 101 cannot read when run as in production", async () => {
    const pair = await testCertificates();
    // Owned by the test's user, mode 0600: unreadable for uid 101 without capabilities.
    const privateKey = join(pair.dir, "private-key.pem");
    await copyFile(pair.key, privateKey);
    await chmod(privateKey, 0o600);
    const name = containerName("private-key");
    const { code, stderr } = await dockerFails(
      ...["run", "--rm", "--name", name, "--env", "TLS=on", ...HARDENED],
      ...secretMounts({ certificate: pair.certificate, key: privateKey }),
      IMAGE,
    );
    expect(code).toBe(1);
    expect(stderr).not.toContain("secret tls_certificate");
    expect(stderr).toContain("TLS=on needs the secret tls_key");
  });
});
