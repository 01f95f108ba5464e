import { execFile } from "node:child_process";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  eventually,
  http2Request,
  makeTestPki,
  type TestPki,
  tlsHandshake,
} from "@app/test-support";
import { checkHistory, startVisitors, summarize } from "@app/visit-history";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { artifactPath, launchChromium } from "../support/browser.ts";
import { durableKeys, postgresCount, waitForBothBackendReplicas } from "../support/compose.ts";
import { TrustingClient } from "../support/https.ts";
import {
  loopbackClient,
  prepareProductionSecrets,
  productionStack,
} from "../support/production.ts";

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// The production stack exactly as docs/PRODUCTION.md's "First start" runs it, with a
// certificate from a throwaway CA the tests trust (support/production.ts).
const { stack, httpsPort, httpPort, url, httpUrl } = await productionStack();
// The name clients use (PUBLIC_HOST, which `init-secrets.sh HOST` writes): not localhost,
// so the edge's served-host check works as on a real server. The client resolves every
// name to 127.0.0.1 (loopbackClient). The test CA's certificate names localhost only:
// requests by name check it against localhost (readme-production.test.ts runs the
// README's recipe with a certificate made for its name).
const PUBLIC_HOST = "visits.example.test";
const publicUrl = `https://${PUBLIC_HOST}:${httpsPort}`;
let pki: TestPki;
let client: TrustingClient;
/** Every secret value, none of which may show in `docker inspect` or `docker history`. */
const secrets: { postgres: string[]; redis: string; tlsKeyLines: string[] } = {
  postgres: [],
  redis: "",
  tlsKeyLines: [],
};

beforeAll(async () => {
  pki = await makeTestPki();
  client = new TrustingClient(pki.caCertificate);
  await prepareProductionSecrets(stack, pki, PUBLIC_HOST);
  const dir = join(stack.directory, "secrets");
  // The superuser's, and those of the counter, its schema's owner, monitoring and backup.
  secrets.postgres = await Promise.all(
    ["", "_counter", "_owner", "_monitoring", "_backup"].map(async (role) =>
      (await readFile(join(dir, `postgres${role}_password.txt`), "utf8")).trim(),
    ),
  );
  secrets.redis = (await readFile(join(dir, "redis_password.txt"), "utf8")).trim();
  // The key's base64 lines (the header lines are not secret).
  secrets.tlsKeyLines = pki.serverKey
    .split("\n")
    .filter((line) => line.length > 0 && !line.startsWith("-----"));
  for (const password of secrets.postgres) expect(password.length).toBeGreaterThan(20);
  expect(new Set(secrets.postgres).size).toBe(5);
  expect(secrets.redis.length).toBeGreaterThan(20);
  expect(secrets.tlsKeyLines.length).toBeGreaterThan(0);
  await stack.up();
});
afterAll(async () => {
  await client?.close();
  await stack.destroy();
});

const get = (path: string, init?: Parameters<TrustingClient["fetch"]>[1]) =>
  client.fetch(`${url}${path}`, init);
async function post(path: string): Promise<{ count: number }> {
  const res = await get(path, { method: "POST" });
  const body = await res.json();
  if (res.status !== 200) throw new Error(`POST ${path}: ${res.status} ${JSON.stringify(body)}`);
  return body as { count: number };
}

async function containers(): Promise<{ id: string; service: string }[]> {
  const ids = (await stack.compose(["ps", "--quiet"])).trim().split("\n");
  return Promise.all(
    ids.map(async (id) => {
      const { stdout } = await run("docker", [
        "inspect",
        "--format",
        '{{index .Config.Labels "com.docker.compose.service"}}',
        id,
      ]);
      return { id, service: stdout.trim() };
    }),
  );
}

async function container(service: string): Promise<string> {
  const found = (await containers()).find((c) => c.service === service);
  if (!found) throw new Error(`no ${service} container`);
  return found.id;
}

/** A shell command in the cache container, with redis-cli authenticated from the secret. */
const inCache = (script: string, timeoutMs?: number) =>
  stack.compose(
    [
      "exec",
      "-T",
      "cache",
      "sh",
      "-c",
      `REDISCLI_AUTH="$(cat /run/secrets/redis_password)"; export REDISCLI_AUTH; ${script}`,
    ],
    { timeoutMs },
  );

/** Recreates the frontend alone with RATE_LIMIT on or off; waits until it is healthy. */
async function setRateLimit(value: "on" | "off"): Promise<void> {
  await stack.compose(["up", "-d", "--no-deps", "--wait", "frontend"], {
    env: { RATE_LIMIT: value },
  });
  // The old container closed its connections: start from fresh ones.
  await client.reconnect();
}

const dockerExec = async (id: string, command: string[]) =>
  (await run("docker", ["exec", id, ...command])).stdout.trim();

describe("production stack", () => {
  it("serves the page, the data API from both replicas, and the counter over HTTPS", async () => {
    const page = await get("/");
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("Fetch Data from Backend");

    await waitForBothBackendReplicas(url, (target) => client.fetch(target));

    const first = await post("/api/visits");
    const second = await post("/api/visits");
    expect(second.count).toBe(first.count + 1);
  });

  it("counts exactly across both counter replicas", async () => {
    const start = (await post("/api/visits")).count;
    const counts = await Promise.all(Array.from({ length: 200 }, () => post("/api/visits")));
    const numbers = counts.map((c) => c.count).sort((a, b) => a - b);
    expect(numbers).toEqual(Array.from({ length: 200 }, (_, i) => start + 1 + i));
  });

  it("runs every container as a non-root user on a read-only root filesystem", async () => {
    const all = await containers();
    expect(all.length).toBe(8);
    for (const { id, service } of all) {
      expect(await dockerExec(id, ["id", "-u"]), service).not.toBe("0");
      await expect(
        run("docker", ["exec", id, "touch", "/written-at-runtime"]),
        service,
      ).rejects.toThrow(/Read-only file system/);
    }
  });

  it("keeps the secrets out of container configurations and image layers", async () => {
    const values = [...secrets.postgres, secrets.redis, ...secrets.tlsKeyLines];
    for (const { id, service } of await containers()) {
      // The whole configuration: environment, command, labels, mounts.
      const { stdout: inspect } = await run("docker", ["inspect", id]);
      for (const value of values) expect(inspect, service).not.toContain(value);
      const { stdout: env } = await run("docker", [
        "inspect",
        "--format",
        "{{json .Config.Env}}",
        id,
      ]);
      expect(env, service).not.toMatch(/(POSTGRES|REDIS)_PASSWORD=/);
    }
    // Once each: the migrate job runs the counter's image.
    const images = new Set((await stack.compose(["config", "--images"])).trim().split("\n"));
    const built = [...images].filter((name) => name.endsWith(`:${stack.name}`));
    expect(built.length).toBe(3);
    for (const image of built) {
      const { stdout } = await run("docker", ["history", "--no-trunc", image]);
      for (const value of values) expect(stdout, image).not.toContain(value);
    }
  });

  it("keeps the database and cache unreachable from the frontend, reachable from the counter", async () => {
    const frontend = await container("frontend");
    const counter = await container("counter");
    for (const target of ["db:5432", "cache:6379"]) {
      await expect(
        run("docker", [
          "exec",
          frontend,
          "curl",
          "--silent",
          "--max-time",
          "3",
          `telnet://${target}`,
        ]),
        `frontend -> ${target}`,
      ).rejects.toThrow();
      const probe = `const [h, p] = "${target}".split(":"); require("node:net").connect(+p, h).on("connect", () => process.exit(0)).on("error", () => process.exit(1))`;
      await expect(
        run("docker", ["exec", counter, "node", "-e", probe]),
        `counter -> ${target}`,
      ).resolves.toBeDefined();
    }
  });

  it("never repeats a number after the cache is stopped, restarted, and the counter restarted", async () => {
    // Reproduces a report against the earlier design (which counted in Redis): there the
    // count went back to the cache's old value and the last five visits repeated numbers.
    const base = (await post("/api/visits")).count - 1;
    for (let i = 2; i <= 20; i++) await post("/api/visits");
    await stack.compose(["stop", "cache"]);
    const whileStopped: number[] = [];
    for (let i = 0; i < 10; i++) whileStopped.push((await post("/api/visits")).count);
    expect(whileStopped).toEqual(Array.from({ length: 10 }, (_, i) => base + 21 + i));

    await stack.compose(["start", "cache"]);
    // The report's "no visit for 6 s": longer than CACHE_TTL_SECONDS (5), so any count
    // the cache held is no longer fresh, which is when the old design read it back.
    await sleep(6_000);
    expect(await (await get("/api/visits")).json()).toEqual({ count: base + 30 });

    await stack.compose(["restart", "counter"]);
    // The report waited 6 s here; waiting for both replicas to be healthy is the sure way.
    await stack.compose(["up", "--detach", "--wait", "counter"]);
    const afterRestart: number[] = [];
    for (let i = 0; i < 5; i++) afterRestart.push((await post("/api/visits")).count);
    expect(afterRestart).toEqual([31, 32, 33, 34, 35].map((n) => base + n));
    expect(await postgresCount(stack)).toBe(base + 35);
  });

  it("counts exactly through Nginx while a counter replica is killed and the cache stopped", async () => {
    // The counter's fault drills, through the real Nginx and both replicas: Nginx sends a
    // visit that found a dead replica to the other one, with the visit's key (its own,
    // when the client sent none), so it is counted once.
    const initialCount = await postgresCount(stack);
    const visitors = startVisitors({
      targets: () => [url],
      path: "/api/visits",
      fetch: client.fetch,
      clients: 6,
      keyedShare: 0.5,
      readShare: 0.25,
      echoShare: 0.2,
      retries: 6,
    });
    const counters = (await containers()).filter((c) => c.service === "counter");
    expect(counters).toHaveLength(2);
    const victim = counters[0]?.id ?? "";
    const startedAt = async () =>
      (await run("docker", ["inspect", "--format", "{{.State.StartedAt}}", victim])).stdout.trim();
    const firstStart = await startedAt();
    await sleep(1_000);
    // SIGKILL: the restart policy brings it back.
    await run("docker", ["kill", "--signal", "KILL", victim]);
    await sleep(1_000);
    await stack.compose(["stop", "cache"]);
    await sleep(1_000);
    await stack.compose(["start", "cache"]);
    await stack.compose(["up", "--detach", "--wait", "counter", "cache"]);
    await sleep(1_000);
    const history = await visitors.stop();
    const result = checkHistory(history, {
      initialCount,
      finalCount: await postgresCount(stack),
      cacheTtlMs: 5_000, // the counter's CACHE_TTL_SECONDS
      durableKeys: await durableKeys(stack),
      // Nginx's own retry of a visit comes back to the client as a replay.
      proxyRetries: true,
    });
    console.info(`through Nginx, a counter killed and the cache stopped: ${summarize(result)}`);
    expect(result.violations).toEqual([]);
    expect(result.acknowledged).toBeGreaterThan(100);
    expect(result.readsChecked).toBeGreaterThan(20);
    // Evidence that the faults happened: the replica started anew, and reads missed the cache.
    expect(await startedAt()).not.toBe(firstStart);
    expect(result.cacheMisses).toBeGreaterThan(0);
  });

  it("answers HTTPS with HTTP/2 and HSTS, and only TLS 1.2 or newer", async () => {
    const h2 = await http2Request(url, "/", pki.caCertificate);
    expect(h2.alpn).toBe("h2");
    expect(h2.status).toBe(200);
    const hsts = String(h2.headers["strict-transport-security"] ?? "");
    expect(Number(hsts.match(/max-age=(\d+)/)?.[1])).toBeGreaterThanOrEqual(31_536_000);

    // Plain HTTP (the health check) never sends HSTS: browsers ignore it there anyway.
    const health = await client.fetch(`${httpUrl}/healthz`);
    expect(health.status).toBe(200);
    await health.text();
    expect(health.headers.get("strict-transport-security")).toBeNull();

    const target = { host: "localhost", port: httpsPort, ca: pki.caCertificate };
    expect(await tlsHandshake({ ...target, minVersion: "TLSv1.2", maxVersion: "TLSv1.2" })).toBe(
      "TLSv1.2",
    );
    expect(await tlsHandshake({ ...target, minVersion: "TLSv1.3" })).toBe("TLSv1.3");
    // The client really offers TLS 1.1 (OpenSSL 3 allows it only at security level 0):
    // the server refuses with a protocol_version alert.
    await expect(
      tlsHandshake({
        ...target,
        minVersion: "TLSv1.1",
        maxVersion: "TLSv1.1",
        ciphers: "DEFAULT@SECLEVEL=0",
      }),
    ).rejects.toThrow(/alert protocol version/);
  });

  it("redirects plain HTTP to HTTPS on the public name with 308, query string kept, except the health check", async () => {
    const byName = loopbackClient(pki.caCertificate, "localhost");
    try {
      for (const base of [httpUrl, `http://${PUBLIC_HOST}:${httpPort}`]) {
        for (const method of ["GET", "POST"]) {
          const res = await byName.fetch(`${base}/api/data?x=1`, { method, redirect: "manual" });
          await res.text();
          expect(res.status, `${method} ${base}`).toBe(308);
          // The origin of PUBLIC_HOST, whichever served name the request used.
          expect(res.headers.get("location"), `${method} ${base}`).toBe(
            `${publicUrl}/api/data?x=1`,
          );
        }
      }
    } finally {
      await byName.close();
    }
    const health = await client.fetch(`${httpUrl}/healthz`, { redirect: "manual" });
    expect(health.status).toBe(200);
    expect(await health.text()).toBe("ok\n");
  });

  it("serves its public name over HTTPS and answers any other host 421, on both ports", async () => {
    const byName = loopbackClient(pki.caCertificate, "localhost");
    try {
      const page = await byName.fetch(`${publicUrl}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain("Fetch Data from Backend");
      const visit = await byName.fetch(`${publicUrl}/api/visits`, { method: "POST" });
      expect(visit.status).toBe(200);
      expect(await visit.json()).toEqual({ count: expect.any(Number) });
      for (const other of [
        `https://other.example.test:${httpsPort}`,
        `http://other.example.test:${httpPort}`,
      ]) {
        const res = await byName.fetch(`${other}/api/visits`, {
          method: "POST",
          redirect: "manual",
        });
        await res.text();
        expect(res.status, other).toBe(421);
      }
    } finally {
      await byName.close();
    }
  });

  it("runs healthy from the documented secrets directory, which only its owner can enter", async () => {
    const dir = join(stack.directory, "secrets");
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    for (const file of [
      "postgres_password.txt",
      "postgres_counter_password.txt",
      "postgres_monitoring_password.txt",
      "postgres_backup_password.txt",
      "redis_password.txt",
      "tls_certificate.pem",
      "tls_key.pem",
    ]) {
      expect((await stat(join(dir, file))).mode & 0o777, file).toBe(0o644);
    }
    // The containers' users (101, 999, 1000) read the files through the 0700 directory.
    const states = (await stack.compose(["ps", "--format", "{{.Service}} {{.State}} {{.Health}}"]))
      .trim()
      .split("\n")
      .sort();
    expect(states).toEqual([
      "backend running healthy",
      "backend running healthy",
      "backup running healthy",
      "cache running healthy",
      "counter running healthy",
      "counter running healthy",
      "db running healthy",
      "frontend running healthy",
    ]);
  });

  it("rate-limits a burst of visits from one client with JSON 429s, never a paced client", async () => {
    await setRateLimit("on");
    try {
      const burst = await Promise.all(
        Array.from({ length: 30 }, async () => {
          const res = await get("/api/visits", { method: "POST" });
          return {
            status: res.status,
            retryAfter: res.headers.get("retry-after"),
            contentType: res.headers.get("content-type"),
            body: (await res.json()) as { count?: number; error?: string },
          };
        }),
      );
      const limited = burst.filter((r) => r.status === 429);
      const counted = burst.filter((r) => r.status === 200);
      expect(limited.length).toBeGreaterThan(0);
      expect(counted.length).toBeGreaterThan(0);
      expect(limited.length + counted.length).toBe(30);
      for (const answer of limited) {
        expect(answer.contentType).toMatch(/^application\/json/);
        expect(answer.body.error).toEqual(expect.any(String));
        expect(Number(answer.retryAfter)).toBeGreaterThan(0);
      }

      // Let the bucket drain (10 at 5 a second), then one visit every 300 ms: under 5/s.
      await sleep(3_000);
      const paced: number[] = [];
      for (let i = 0; i < 10; i++) {
        const res = await get("/api/visits", { method: "POST" });
        await res.text();
        paced.push(res.status);
        await sleep(300);
      }
      expect(paced).toEqual(Array.from({ length: 10 }, () => 200));
    } finally {
      await setRateLimit("off");
    }
  });

  it("keeps Redis within its memory limit under a flood of keys, and keeps counting", async () => {
    // ~150,000 values of 1000 bytes (some 160 MB) through redis-cli --pipe, in the Redis
    // protocol, generated in the container: far past maxmemory (96 MB).
    const fill = [
      "awk 'BEGIN {",
      '  v = sprintf("%1000s", ""); gsub(/ /, "x", v);',
      "  for (i = 0; i < 150000; i++) {",
      '    k = "e2e-fill:" i;',
      '    printf "*3\\r\\n$3\\r\\nSET\\r\\n$%d\\r\\n%s\\r\\n$1000\\r\\n%s\\r\\n", length(k), k, v',
      "  }",
      "}' | redis-cli --pipe",
    ].join("\n");
    const output = await inCache(fill, 300_000);
    expect(output).toMatch(/errors: 0, replies: 150000/);

    const info = await inCache("redis-cli info memory; redis-cli info stats");
    const field = (name: string) => Number(info.match(new RegExp(`^${name}:(\\d+)`, "m"))?.[1]);
    expect(field("maxmemory")).toBe(96 * 1024 * 1024);
    expect(field("evicted_keys")).toBeGreaterThan(0);
    // Redis frees memory before each write: it stays at the limit, not far past it.
    expect(field("used_memory")).toBeLessThanOrEqual(field("maxmemory") + 2 * 1024 * 1024);

    const cache = await container("cache");
    const { stdout } = await run("docker", [
      "inspect",
      "--format",
      "{{.RestartCount}} {{.State.OOMKilled}} {{.State.Status}}",
      cache,
    ]);
    expect(stdout.trim()).toBe("0 false running");

    const counted = (await post("/api/visits")).count;
    // Within the cache's lifetime a read may lag a moment behind the visit it follows.
    await eventually(async () =>
      expect(await (await get("/api/visits")).json()).toEqual({ count: counted }),
    );
  });

  it("keeps serving when a backend replica dies", async () => {
    await run("docker", ["kill", await container("backend")]);
    for (let i = 0; i < 10; i++) {
      const res = await get("/api/data");
      await res.text();
      expect(res.status).toBe(200);
    }
  });

  it("works in a browser over HTTPS: data button, visit count, no CSP violation or console error", async () => {
    const browser = await launchChromium({ trustSpkiHashes: [pki.caSpkiHash] });
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on("console", (message) => {
        if (message.type() === "error" || message.type() === "warning")
          problems.push(message.text());
      });
      page.on("pageerror", (error) => problems.push(error.message));

      const response = await page.goto(url);
      expect(response?.status()).toBe(200);
      const visits = page.getByTestId("visits");
      await expect.poll(() => visits.textContent()).toMatch(/visited \d+ times/);
      const firstCount = Number((await visits.textContent())?.match(/\d+/)?.[0]);

      await page.getByRole("button", { name: "Fetch Data from Backend" }).click();
      await expect
        .poll(() => page.getByTestId("data-message").textContent())
        .toBe("Hello from Backend API managed by Docker Compose!");
      expect(await page.getByTestId("data-host").textContent()).toMatch(/\S+/);
      await page.screenshot({ path: await artifactPath("prod-page.png"), fullPage: true });

      await page.reload();
      await expect
        .poll(async () => Number((await visits.textContent())?.match(/\d+/)?.[0]))
        .toBeGreaterThan(firstCount);
      expect(problems).toEqual([]);
    } finally {
      await browser.close();
    }
  });

  it("mounts no anonymous volume, which every `down` would leave behind", async () => {
    expect(await stack.anonymousVolumes()).toEqual([]);
  });

  it("keeps the count over down/up and starts over after down -v", async () => {
    const before = (await post("/api/visits")).count;
    await stack.compose(["down", "--timeout", "10"]);
    await stack.up();
    await client.reconnect();
    expect((await post("/api/visits")).count).toBe(before + 1);

    await stack.compose(["down", "--volumes", "--timeout", "10"]);
    await stack.up();
    await client.reconnect();
    expect((await post("/api/visits")).count).toBe(1);
  });
});

describe("production stack boundaries", () => {
  it("connects the counter as a role that cannot run programs, create roles or administer", async () => {
    // The counter's own connection settings, password file included, from inside it.
    const probe = `
      const pg = require("pg");
      const password = require("node:fs").readFileSync(process.env.POSTGRES_PASSWORD_FILE, "utf8").trim();
      const client = new pg.Client({ host: process.env.POSTGRES_HOST, user: process.env.POSTGRES_USER,
        database: process.env.POSTGRES_DB, password });
      const attempt = (sql) => client.query(sql).then(() => "allowed", (error) => error.message);
      client.connect().then(async () => {
        const role = (await client.query(
          "SELECT current_user AS name, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user")).rows[0];
        const copy = await attempt("COPY (SELECT 1) TO PROGRAM 'id'");
        const createRole = await attempt("CREATE ROLE intruder LOGIN");
        const alterSystem = await attempt("ALTER SYSTEM SET log_statement = 'all'");
        const ownTable = await attempt("SELECT count FROM visit_counts");
        console.log(JSON.stringify({ role, copy, createRole, alterSystem, ownTable }));
        await client.end();
      });`;
    const result = JSON.parse(
      await dockerExec(await container("counter"), ["node", "-e", probe]),
    ) as Record<string, unknown>;
    expect(result.role).toEqual({
      name: "counter",
      rolsuper: false,
      rolcreaterole: false,
      rolcreatedb: false,
    });
    expect(result.copy).toMatch(/permission denied/);
    expect(result.createRole).toMatch(/permission denied/);
    expect(result.alterSystem).toMatch(/permission denied/);
    expect(result.ownTable).toBe("allowed");
  });

  it("gives backend and counter no default route: only the frontend has a way out", async () => {
    // The kernel's routing table: a default route is destination 00000000.
    const defaultRoute = (id: string) =>
      dockerExec(id, ["sh", "-c", "awk 'NR > 1 && $2 == \"00000000\"' /proc/net/route"]);
    for (const { id, service } of await containers()) {
      if (service === "frontend") expect(await defaultRoute(id), service).not.toBe("");
      else expect(await defaultRoute(id), service).toBe("");
    }
  });

  /** A visit from another client: a container on the frontend's network, another address. */
  async function visitFromElsewhere(key: string): Promise<{ count: number; replayed: boolean }> {
    const script = `
      const req = require("node:https").request({ host: "frontend", port: 8443, path: "/api/visits",
        method: "POST", ca: process.env.CA, servername: "localhost",
        headers: { Host: "localhost", "Idempotency-Key": process.env.KEY } }, (res) => {
        let body = ""; res.on("data", (c) => (body += c));
        res.on("end", () => console.log(JSON.stringify({ status: res.statusCode,
          replayed: res.headers["idempotent-replayed"] === "true", ...JSON.parse(body) })));
      });
      req.end();`;
    const { stdout } = await run("docker", [
      ...["run", "--rm", "--network", `${stack.name}_edge`],
      ...["--env", `CA=${pki.caCertificate}`, "--env", `KEY=${key}`],
      process.env.NODE_IMAGE ?? "node:24-trixie-slim",
      ...["node", "-e", script],
    ]);
    const answer = JSON.parse(stdout) as { status: number; count: number; replayed: boolean };
    expect(answer.status).toBe(200);
    return answer;
  }

  async function visit(headers: Record<string, string> = {}) {
    const res = await get("/api/visits", { method: "POST", headers });
    expect(res.status).toBe(200);
    const { count } = (await res.json()) as { count: number };
    return { count, replayed: res.headers.get("idempotent-replayed") === "true", res };
  }

  it("replays a keyed visit to the client that sent it, never to another client", async () => {
    const key = `replay-${Date.now()}`;
    const first = await visit({ "Idempotency-Key": key });
    const retry = await visit({ "Idempotency-Key": key });
    expect(retry).toMatchObject({ count: first.count, replayed: true });
    const elsewhere = await visitFromElsewhere(key);
    expect(elsewhere.replayed).toBe(false);
    expect(elsewhere.count).not.toBe(first.count);
  });

  it("never takes a response's X-Request-Id back as the key of that visit", async () => {
    const first = await visit();
    const id = first.res.headers.get("x-request-id") ?? "";
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    const replay = await visit({ "Idempotency-Key": id });
    expect(replay.replayed).toBe(false);
    expect(replay.count).toBeGreaterThan(first.count);
  });
});
