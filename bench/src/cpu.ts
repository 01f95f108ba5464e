import { readFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { run } from "./proc.ts";
import type { Stack } from "./stack.ts";

/** CPU seconds a container has used, from its cgroup (v2 or v1, cgroupfs or systemd driver). */
async function cgroupSeconds(id: string): Promise<number> {
  for (const [path, key, unit] of [
    [`/sys/fs/cgroup/system.slice/docker-${id}.scope/cpu.stat`, "usage_usec ", 1e6],
    [`/sys/fs/cgroup/docker/${id}/cpu.stat`, "usage_usec ", 1e6],
    [`/sys/fs/cgroup/cpuacct/docker/${id}/cpuacct.usage`, "", 1e9],
    [`/sys/fs/cgroup/cpuacct/system.slice/docker-${id}.scope/cpuacct.usage`, "", 1e9],
  ] as const) {
    const text = await readFile(path, "utf8").catch(() => undefined);
    const line = text?.split("\n").find((l) => l.startsWith(key));
    if (line) return Number(line.slice(key.length)) / unit;
  }
  return Number.NaN;
}

// The metrics port is published nowhere (and reachable only on the monitoring network):
// read it from inside the container, with the container's own Node.
const SCRAPE =
  "fetch('http://127.0.0.1:' + (process.env.METRICS_PORT || 9464) + '/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))";

/** The sum of a metric's samples over all its label sets, from Prometheus' text format. */
const metric = (text: string, name: string) =>
  text
    .split("\n")
    .filter((line) => line.startsWith(name) && /^[^\s{]+/.exec(line)?.[0] === name)
    .reduce((sum, line) => sum + Number(line.split(" ").pop()), 0);

export interface ServiceUse {
  /** CPU seconds, all replicas together. */
  cpuS: number;
  /** Where cpuS comes from: the process' own metric, or the container's cgroup. */
  source: "metrics" | "cgroup";
  /** counter_batch_size' _count and _sum: commits and the visits in them. */
  batches: number;
  batchedVisits: number;
}

/** The services a request goes through (others, e.g. backups, are no part of its cost). */
export const ON_PATH: Record<string, string> = {
  frontend: "Nginx",
  backend: "backend",
  counter: "counter",
  db: "PostgreSQL",
  cache: "Redis",
};

type StackSample = Map<string, ServiceUse & { service: string }>;

/**
 * Every running container's counters: the Node services' process_cpu_seconds_total and
 * batch histogram from their metrics, the others' CPU (and a Node service's, on a commit
 * without a metrics endpoint) from their cgroup, which no exporter gives per request.
 */
async function sampleStack(stack: Stack): Promise<StackSample> {
  const containers = (await stack.containers()).filter((c) => c.running && c.service in ON_PATH);
  const sample = async (id: string, service: string) => {
    const scraped = ["backend", "counter"].includes(service)
      ? await run("docker", ["exec", id, "node", "-e", SCRAPE], { allowFailure: true })
      : undefined;
    const text = scraped?.code === 0 ? scraped.stdout : undefined;
    return [
      id,
      {
        service,
        cpuS: text ? metric(text, "process_cpu_seconds_total") : await cgroupSeconds(id),
        source: text ? "metrics" : "cgroup",
        batches: text ? metric(text, "counter_batch_size_count") : 0,
        batchedVisits: text ? metric(text, "counter_batch_size_sum") : 0,
      },
    ] as const;
  };
  return new Map(await Promise.all(containers.map((c) => sample(c.id, c.service))));
}

/** Busy and total jiffies of the whole machine, from /proc/stat. */
async function sampleHost(): Promise<{ busy: number; total: number }> {
  const line = (await readFile("/proc/stat", "utf8")).split("\n")[0] ?? "";
  const fields = line.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/** Starts measuring; stop() returns what each service used since (containers seen both times). */
export async function startCpuWatch(stack: Stack) {
  const [hostBefore, before] = [await sampleHost(), await sampleStack(stack)];
  return {
    async stop(): Promise<{ services: Map<string, ServiceUse>; busyCores: number }> {
      const [after, hostAfter] = [await sampleStack(stack), await sampleHost()];
      const services = new Map<string, ServiceUse>();
      for (const [id, b] of after) {
        const a = before.get(id);
        if (!a) continue;
        const use = services.get(b.service) ?? { ...b, cpuS: 0, batches: 0, batchedVisits: 0 };
        use.cpuS += b.cpuS - a.cpuS;
        use.batches += b.batches - a.batches;
        use.batchedVisits += b.batchedVisits - a.batchedVisits;
        if (b.source === "cgroup") use.source = "cgroup";
        services.set(b.service, use);
      }
      const busy =
        (hostAfter.busy - hostBefore.busy) / Math.max(1, hostAfter.total - hostBefore.total);
      return { services, busyCores: busy * availableParallelism() };
    },
  };
}

export interface IdleWait {
  waitedMs: number;
  /** Busy cores of the machine in the last second before the measurement. */
  busyCores: number;
  quiet: boolean;
}

/**
 * Waits (at most `maxMs`) until the machine has been quiet (fewer than `threshold`
 * busy cores) for 3 seconds in a row, so a measurement does not share the CPUs with
 * something else, e.g. a concurrent CI run. Reports how busy it was when it gave up.
 */
export async function waitForQuiet(maxMs: number, threshold = 0.3): Promise<IdleWait> {
  const started = performance.now();
  const cores = availableParallelism();
  let quietSeconds = 0;
  let busyCores = 0;
  for (;;) {
    const a = await sampleHost();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const b = await sampleHost();
    busyCores = ((b.busy - a.busy) / Math.max(1, b.total - a.total)) * cores;
    quietSeconds = busyCores < threshold ? quietSeconds + 1 : 0;
    const waitedMs = performance.now() - started;
    if (quietSeconds >= 3) return { waitedMs, busyCores, quiet: true };
    if (waitedMs >= maxMs) return { waitedMs, busyCores, quiet: false };
  }
}
