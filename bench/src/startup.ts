import { start } from "./proc.ts";
import type { Stack } from "./stack.ts";

export interface ContainerTimeline {
  name: string;
  /** Milliseconds after `up` was started; undefined if the event was not seen. */
  startedMs: number | undefined;
  healthyMs: number | undefined;
}

export interface StartupTiming {
  ms: number;
  containers: ContainerTimeline[];
}

/**
 * Times `docker compose up --detach --wait` with images already built (`--no-build`),
 * and records each container's start and first "healthy" from `docker events`, so the
 * critical path (which service waited for which) can be read off.
 */
export async function timedUp(stack: Stack): Promise<StartupTiming> {
  const events = start("docker", [
    "events",
    "--filter",
    `label=com.docker.compose.project=${stack.name}`,
    "--filter",
    "type=container",
    "--format",
    "{{json .}}",
  ]);
  // `docker events` subscribes asynchronously; give it a moment before the clock starts.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const startedAtNs = BigInt(Date.now()) * 1_000_000n;
  const started = performance.now();
  try {
    await stack.up(["--no-build"]);
  } finally {
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  const ms = performance.now() - started;
  const log = await events.stop();

  const byName = new Map<string, ContainerTimeline>();
  for (const line of log.split("\n")) {
    if (!line.trim()) continue;
    const event = JSON.parse(line) as {
      Action?: string;
      status?: string;
      timeNano?: number;
      Actor?: { Attributes?: Record<string, string> };
    };
    const name = event.Actor?.Attributes?.name;
    const action = event.Action ?? event.status ?? "";
    if (!name || event.timeNano === undefined) continue;
    const at = Number(BigInt(event.timeNano) - startedAtNs) / 1e6;
    const entry = byName.get(name) ?? { name, startedMs: undefined, healthyMs: undefined };
    if (action === "start") entry.startedMs ??= at;
    if (
      action.startsWith("health_status") &&
      action.endsWith("healthy") &&
      !/unhealthy/.test(action)
    )
      entry.healthyMs ??= at;
    byName.set(name, entry);
  }
  const containers = [...byName.values()].sort(
    (a, b) => (a.healthyMs ?? a.startedMs ?? 0) - (b.healthyMs ?? b.startedMs ?? 0),
  );
  return { ms, containers };
}

/** "db 3.5→10.1 s · counter-1 11.0→15.8 s · …": start and healthy per container, in order. */
export function describeTimeline(timing: StartupTiming, projectName: string): string {
  const s = (ms: number | undefined) => (ms === undefined ? "?" : (ms / 1000).toFixed(1));
  return timing.containers
    .map((c) => `${c.name.replace(`${projectName}-`, "")} ${s(c.startedMs)}→${s(c.healthyMs)} s`)
    .join(" · ");
}
