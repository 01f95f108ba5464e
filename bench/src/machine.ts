import { availableParallelism, cpus, loadavg, release, totalmem } from "node:os";
import { run } from "./proc.ts";
import { REPO_ROOT } from "./stack.ts";

export interface Machine {
  date: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  docker: string;
  compose: string;
  node: string;
  loadAverage: string;
  commit: string;
  /** Running containers that belong to other projects (e.g. a concurrent CI run). */
  otherContainers: number;
}

const output = async (command: string, args: string[]) =>
  (await run(command, args, { cwd: REPO_ROOT, allowFailure: true })).stdout.trim() || "unknown";

export async function describeMachine(ownProjectPrefix: string, ref?: string): Promise<Machine> {
  const head = await output("git", ["rev-parse", "--short", ref ?? "HEAD"]);
  // The reports a run writes are not code it measures.
  const dirty = (await output("git", ["status", "--porcelain"]))
    .split("\n")
    .filter(
      (l) => l.trim() && l !== "unknown" && !/ (docs\/PERFORMANCE\.md|bench\/results\/)/.test(l),
    ).length;
  const names = (await output("docker", ["ps", "--format", "{{.Names}}"])).split("\n");
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    cpu: cpus()[0]?.model ?? "unknown",
    cores: availableParallelism(),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    docker: await output("docker", ["version", "--format", "{{.Server.Version}}"]),
    compose: await output("docker", ["compose", "version", "--short"]),
    node: process.version,
    loadAverage: loadavg()
      .map((l) => l.toFixed(2))
      .join(" "),
    commit: ref
      ? `${head}${ref === head ? "" : ` (${ref})`}, copied with git archive`
      : dirty > 0
        ? `${head} + ${dirty} uncommitted file(s) in the working tree`
        : head,
    otherContainers: names.filter((n) => n && n !== "unknown" && !n.startsWith(ownProjectPrefix))
      .length,
  };
}

export function machineLines(m: Machine): string[] {
  return [
    `Date: ${m.date}`,
    `Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB RAM, Linux ${m.kernel}`,
    `Docker ${m.docker}, Compose ${m.compose}, Node ${m.node}`,
    `Code: commit ${m.commit}`,
    `Load average at start: ${m.loadAverage}; containers of other projects running: ${m.otherContainers}`,
  ];
}
