import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { eventually, makeTestPki } from "@app/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TrustingClient } from "../support/https.ts";
import { prepareProductionSecrets, productionStack } from "../support/production.ts";

// The production stack with docker-compose.monitoring.yml, as the README's monitoring
// section starts it: Prometheus finds every target, the exporters reach what they
// export, the metrics ports stay off the public side, and the figures move when the
// stack does. The alerts' logic is proven by promtool (monitoring-rules.test.ts); here,
// the series they are built on.
const MONITORING_FILE = "docker-compose.monitoring.yml";
const { stack, url } = await productionStack({
  extraFiles: [MONITORING_FILE],
  env: { PROMETHEUS_PORT: "0" },
});
let client: TrustingClient;
let prometheus: string;
const passwords: string[] = [];

interface Target {
  labels: { job: string; instance: string };
  health: string;
  lastError: string;
}

/** An instant PromQL query: the result's series with their values as numbers. */
async function query(promql: string): Promise<{ metric: Record<string, string>; value: number }[]> {
  const res = await fetch(`${prometheus}/api/v1/query?${new URLSearchParams({ query: promql })}`);
  const body = (await res.json()) as {
    status: string;
    data: { result: { metric: Record<string, string>; value: [number, string] }[] };
  };
  expect(body.status).toBe("success");
  return body.data.result.map(({ metric, value }) => ({ metric, value: Number(value[1]) }));
}

/** Polls `promql` until its single value passes `check`; resolves to that value. */
function eventuallyValue(promql: string, check: (value: number) => void, timeoutMs = 90_000) {
  return eventually(
    async () => {
      const [first, ...rest] = await query(promql);
      expect(rest).toEqual([]);
      check(first?.value ?? Number.NaN);
      return first?.value;
    },
    timeoutMs,
    1_000,
  );
}

async function targets(): Promise<Target[]> {
  const res = await fetch(`${prometheus}/api/v1/targets?state=active`);
  return ((await res.json()) as { data: { activeTargets: Target[] } }).data.activeTargets;
}

beforeAll(async () => {
  const pki = await makeTestPki();
  client = new TrustingClient(pki.caCertificate);
  await prepareProductionSecrets(stack, pki);
  for (const file of ["postgres_monitoring_password.txt", "redis_password.txt"])
    passwords.push((await readFile(join(stack.directory, "secrets", file), "utf8")).trim());
  await stack.up();
  // The monitoring role, with the secret's password: db-setup (infra/postgres) made it.
  prometheus = await stack.url("prometheus", 9090);
});
afterAll(async () => {
  await client?.close();
  await stack.destroy();
});

describe("production stack with monitoring", () => {
  it("brings Prometheus and every exporter up healthy", async () => {
    const containers = (await stack.compose(["ps", "--format", "json"]))
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { Service: string; Health: string });
    for (const service of ["prometheus", "nginx-exporter", "postgres-exporter", "redis-exporter"])
      expect(containers.find((c) => c.Service === service)?.Health, service).toBe("healthy");
    expect(containers.every((c) => c.Health === "healthy")).toBe(true);
  });

  it("mounts no anonymous volume, which every `down` would leave behind", async () => {
    expect(await stack.anonymousVolumes()).toEqual([]);
  });

  it("scrapes every target, each replica found through Docker's DNS, and every exporter reaches its service", async () => {
    const up = await eventually(
      async () => {
        const active = await targets();
        const byJob = Object.groupBy(active, (target) => target.labels.job);
        expect(Object.keys(byJob).sort()).toEqual([
          "backend",
          "counter",
          "nginx",
          "postgres",
          "prometheus",
          "redis",
        ]);
        expect(byJob.counter).toHaveLength(2);
        expect(byJob.backend).toHaveLength(2);
        for (const target of active) expect(target.health, target.labels.instance).toBe("up");
        return active;
      },
      90_000,
      1_000,
    );
    // The list the closing note quotes.
    console.log(
      up
        .map((t) => `${t.labels.job.padEnd(10)} ${t.labels.instance.padEnd(22)} ${t.health}`)
        .sort()
        .join("\n"),
    );
    for (const metric of ["nginx_up", "pg_up", "redis_up"])
      await eventuallyValue(metric, (value) => expect(value, metric).toBe(1));
  });

  it("keeps every metrics endpoint off the public side", async () => {
    for (const path of ["/api/metrics", "/metrics", "/api/data/metrics", "/stub_status"]) {
      const res = await client.fetch(`${url}${path}`);
      expect(res.status, path).toBe(404);
      await res.text();
    }
    // Published: the frontend (HTTP redirect, HTTPS), and Prometheus on loopback only.
    const config = JSON.parse(await stack.compose(["config", "--format", "json"])) as {
      services: Record<string, { ports?: { target: number; host_ip?: string }[] }>;
    };
    const published = Object.entries(config.services).flatMap(([name, service]) =>
      (service.ports ?? []).map((port) => `${name}:${port.target}@${port.host_ip ?? "*"}`),
    );
    expect(published.sort()).toEqual([
      "frontend:8080@0.0.0.0",
      "frontend:8443@0.0.0.0",
      "prometheus:9090@127.0.0.1",
    ]);
  });

  it("keeps the exporters' passwords out of their configuration and logs", async () => {
    const ids = (await stack.compose(["ps", "--quiet", "postgres-exporter", "redis-exporter"]))
      .trim()
      .split("\n");
    const { stdout: inspect } = await promisify(execFile)("docker", ["inspect", ...ids]);
    const logs = await stack.compose(["logs", "--no-color", "postgres-exporter", "redis-exporter"]);
    for (const password of passwords) {
      expect(inspect).not.toContain(password);
      expect(logs).not.toContain(password);
    }
  });

  it("shows a burst of visits as a visit rate above 0 and batch sizes", async () => {
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        Array.from({ length: 20 }, async () => {
          const res = await client.fetch(`${url}/api/visits`, { method: "POST" });
          await res.text();
        }),
      );
    }
    await eventuallyValue("sum(rate(counter_visits_total[1m]))", (rate) =>
      expect(rate).toBeGreaterThan(0),
    );
    await eventuallyValue("sum(job:counter_visits:rate1m)", (rate) =>
      expect(rate).toBeGreaterThan(0),
    );
    await eventuallyValue("sum(counter_batch_size_count)", (batches) =>
      expect(batches).toBeGreaterThan(0),
    );
    await eventuallyValue("sum(counter_batch_size_sum)", (visits) =>
      expect(visits).toBeGreaterThanOrEqual(200),
    );
  });

  it("finds a third counter replica with no change to its configuration", async () => {
    await stack.compose([
      "up",
      "--detach",
      "--no-recreate",
      "--wait",
      "--scale",
      "counter=3",
      "counter",
    ]);
    await eventually(
      async () => {
        const counters = (await targets()).filter((t) => t.labels.job === "counter");
        expect(counters.map((t) => t.health)).toEqual(["up", "up", "up"]);
      },
      60_000,
      1_000,
    );
  });

  it("shows visits answered 503 while PostgreSQL is stopped", async () => {
    await stack.compose(["stop", "db"]);
    try {
      await eventually(
        async () => {
          const res = await client.fetch(`${url}/api/visits`, { method: "POST" });
          await res.text();
          const [rate] = await query("sum(rate(counter_visits_unavailable_total[1m]))");
          expect(rate?.value).toBeGreaterThan(0);
        },
        90_000,
        500,
      );
      await eventuallyValue("pg_up", (value) => expect(value).toBe(0));
    } finally {
      await stack.compose(["start", "db"]);
    }
  });
});
