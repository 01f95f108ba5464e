import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CommandError, type RunResult } from "./proc.ts";
import type { Stack } from "./stack.ts";

/** One BuildKit vertex of a `--progress plain` log. */
export interface BuildStep {
  id: string;
  /** e.g. "backend deps 2/3"; a vertex shared by two services has two. */
  names: string[];
  instruction: string;
  status: "cached" | "done" | "error" | "unknown";
  seconds: number | undefined;
}

/**
 * Reads BuildKit's plain progress: `#12 [backend deps 2/3] RUN …` names a vertex, and
 * later lines `#12 CACHED`, `#12 DONE 8.7s` or `#12 ERROR …` give its outcome.
 */
export function parsePlainProgress(log: string): BuildStep[] {
  const steps = new Map<string, BuildStep>();
  for (const line of log.split("\n")) {
    const named = /^#(\d+) \[([^\]]+)\] (.*)$/.exec(line);
    if (named) {
      const [, id = "", name = "", instruction = ""] = named;
      const step = steps.get(id) ?? {
        id,
        names: [],
        instruction: instruction.replace(/\s+/g, " "),
        status: "unknown" as const,
        seconds: undefined,
      };
      if (!step.names.includes(name)) step.names.push(name);
      steps.set(id, step);
      continue;
    }
    const outcome = /^#(\d+) (CACHED|DONE ([\d.]+)s|ERROR)/.exec(line);
    const step = outcome && steps.get(outcome[1] ?? "");
    if (!outcome || !step) continue;
    if (outcome[2] === "CACHED") step.status = "cached";
    else if (outcome[2] === "ERROR") step.status = "error";
    else {
      // A vertex already seen as CACHED stays so (BuildKit may print DONE 0.0s as well).
      if (step.status !== "cached") step.status = "done";
      step.seconds = Number(outcome[3]);
    }
  }
  // Only Dockerfile instructions (not "internal" context loading or "exporting to image").
  return [...steps.values()].filter((s) => /^\w+ \S+ \d+\/\d+$/.test(s.names[0] ?? ""));
}

export interface BuildTiming {
  seconds: number;
  steps: BuildStep[];
}

/** Times `docker compose build` (all services of the stack, as `up --build` would). */
export async function timedBuild(stack: Stack, extra: string[] = []): Promise<BuildTiming> {
  const started = performance.now();
  let result: RunResult;
  try {
    result = await stack.build(extra);
  } catch (error) {
    if (!(error instanceof CommandError)) throw error;
    // The whole log, kept after the clean-up: the error is rarely in the last lines.
    const path = join(tmpdir(), `${stack.name}-build-failure.log`);
    await writeFile(path, `${error.result.stdout}\n${error.result.stderr}`);
    throw new Error(`docker compose build failed; full log in ${path}\n${error.message}`);
  }
  const seconds = (performance.now() - started) / 1000;
  return { seconds, steps: parsePlainProgress(`${result.stdout}\n${result.stderr}`) };
}

/** The layers that install dependencies: they must be cache hits after a source-only change. */
export function dependencySteps(steps: BuildStep[]): BuildStep[] {
  return steps.filter((s) => /pnpm install|npm install --global/.test(s.instruction));
}

export const describeStep = (s: BuildStep) =>
  `[${s.names.join(" + ")}] ${s.instruction.length > 70 ? `${s.instruction.slice(0, 67)}…` : s.instruction}`;
