import { readdir, readFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { run } from "./proc.ts";
import type { Stack } from "./stack.ts";

/** CPU time of one container from its cgroup (v1 or v2, cgroupfs or systemd driver). */
interface CgroupSample {
  usageNs: number;
  periods: number;
  throttled: number;
}

async function readNumbers(path: string): Promise<Map<string, number> | undefined> {
  try {
    const text = await readFile(path, "utf8");
    const values = new Map<string, number>();
    for (const line of text.split("\n")) {
      const [key, value] = line.trim().split(/\s+/);
      if (key && value !== undefined) values.set(key, Number(value));
      else if (key && /^\d+$/.test(key)) values.set("", Number(key));
    }
    return values;
  } catch {
    return undefined;
  }
}

async function sampleCgroup(id: string): Promise<CgroupSample | undefined> {
  // cgroup v2
  for (const dir of [
    `/sys/fs/cgroup/system.slice/docker-${id}.scope`,
    `/sys/fs/cgroup/docker/${id}`,
  ]) {
    const stat = await readNumbers(`${dir}/cpu.stat`);
    if (stat?.has("usage_usec")) {
      return {
        usageNs: (stat.get("usage_usec") ?? 0) * 1000,
        periods: stat.get("nr_periods") ?? 0,
        throttled: stat.get("nr_throttled") ?? 0,
      };
    }
  }
  // cgroup v1
  for (const parent of ["docker", "system.slice"]) {
    const leaf = parent === "docker" ? id : `docker-${id}.scope`;
    const usage = await readNumbers(`/sys/fs/cgroup/cpuacct/${parent}/${leaf}/cpuacct.usage`);
    if (usage?.has("")) {
      const stat = await readNumbers(`/sys/fs/cgroup/cpu/${parent}/${leaf}/cpu.stat`);
      return {
        usageNs: usage.get("") ?? 0,
        periods: stat?.get("nr_periods") ?? 0,
        throttled: stat?.get("nr_throttled") ?? 0,
      };
    }
  }
  return undefined;
}

/** Busy and total jiffies of the whole machine, from /proc/stat. */
export async function sampleHost(): Promise<{ busy: number; total: number }> {
  const line = (await readFile("/proc/stat", "utf8")).split("\n")[0] ?? "";
  const fields = line.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

export interface ServiceCpu {
  service: string;
  replicas: number;
  /** CPU cores used, all replicas together. */
  cores: number;
  /** The per-container limit (docker `cpus`), if any. */
  limit: number | undefined;
  /** Share of CFS periods in which the busiest replica was throttled (0..1). */
  throttled: number;
}

export interface CpuReport {
  /** Busy cores of the whole machine (everything: the stack, this process, anything else). */
  hostCores: number;
  /** Cores used by this process (the load generator). */
  generatorCores: number;
  /** Cores used by Docker's userland proxy of the published port (part of the HTTP path). */
  proxyCores: number;
  /** What remains: processes unrelated to this run (another test run, the Docker daemon…). */
  otherCores: number;
  services: ServiceCpu[];
}

/** utime + stime (clock ticks, 100 per second on Linux) of every docker-proxy serving `port`. */
async function sampleProxy(port: number | undefined): Promise<number> {
  if (port === undefined) return 0;
  let ticks = 0;
  for (const pid of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cmdline = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
      if (!cmdline[0]?.endsWith("docker-proxy")) continue;
      if (cmdline[cmdline.indexOf("-host-port") + 1] !== String(port)) continue;
      const stat = await readFile(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // The process ended meanwhile.
    }
  }
  return ticks;
}

/** Starts measuring; stop() returns the CPU used since, per service, by the machine and by this process. */
export async function startCpuWatch(stack: Stack, hostPort?: number) {
  const containers = (await stack.containers()).filter((c) => c.running);
  const limits = new Map<string, number>();
  if (containers.length > 0) {
    const { stdout } = await run("docker", [
      "inspect",
      "--format",
      "{{.Id}} {{.HostConfig.NanoCpus}}",
      ...containers.map((c) => c.id),
    ]);
    for (const line of stdout.trim().split("\n")) {
      const [id, nano] = line.split(" ");
      if (id && Number(nano) > 0) limits.set(id, Number(nano) / 1e9);
    }
  }
  const sample = async () => ({
    at: performance.now(),
    host: await sampleHost(),
    self: process.cpuUsage(),
    proxy: await sampleProxy(hostPort),
    cgroups: new Map(
      await Promise.all(containers.map(async (c) => [c.id, await sampleCgroup(c.id)] as const)),
    ),
  });
  const before = await sample();
  return {
    async stop(): Promise<CpuReport> {
      const after = await sample();
      const seconds = (after.at - before.at) / 1000;
      const cores = availableParallelism();
      const hostShare =
        (after.host.busy - before.host.busy) / Math.max(1, after.host.total - before.host.total);
      const selfUs = after.self.user + after.self.system - (before.self.user + before.self.system);
      const services = new Map<string, ServiceCpu>();
      for (const c of containers) {
        const a = before.cgroups.get(c.id);
        const b = after.cgroups.get(c.id);
        const entry = services.get(c.service) ?? {
          service: c.service,
          replicas: 0,
          cores: 0,
          limit: limits.get(c.id),
          throttled: 0,
        };
        entry.replicas += 1;
        if (a && b) {
          entry.cores += (b.usageNs - a.usageNs) / 1e9 / seconds;
          const periods = b.periods - a.periods;
          if (periods > 0)
            entry.throttled = Math.max(entry.throttled, (b.throttled - a.throttled) / periods);
        } else {
          entry.cores = Number.NaN;
        }
        services.set(c.service, entry);
      }
      const hostCores = hostShare * cores;
      const generatorCores = selfUs / 1e6 / seconds;
      const proxyCores = (after.proxy - before.proxy) / 100 / seconds;
      const stackCores = [...services.values()].reduce(
        (sum, x) => sum + (Number.isNaN(x.cores) ? 0 : x.cores),
        0,
      );
      return {
        hostCores,
        generatorCores,
        proxyCores,
        otherCores: Math.max(0, hostCores - generatorCores - proxyCores - stackCores),
        services: [...services.values()].sort((x, y) => x.service.localeCompare(y.service)),
      };
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
