import { execFile } from "node:child_process";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyRepository, REPO_ROOT } from "./support/compose.ts";

const run = promisify(execFile);

// turbo.json's promise: `pnpm test` never replays a pass for code the test did not run.
// A task's hash must change with every file the task depends on: its package, each
// workspace package it uses (directly or not), and for the e2e tests every compose file,
// Dockerfile, app, package and infra/ file a stack is built from. Checked in a scratch
// copy of the repository: one edit at a time, `turbo run --dry=json` before and after.

const TASKS = ["test", "test:e2e", "typecheck"];
/** A file to edit in each workspace package: a source its users really read. */
const SOURCE: Record<string, string> = {
  "@app/backend": "apps/backend/src/main.ts",
  "@app/bench": "bench/src/bench.ts",
  "@app/config": "packages/config/src/fields.ts",
  "@app/counter": "apps/counter/src/main.ts",
  "@app/e2e": "e2e/test/support/compose.ts",
  "@app/frontend": "apps/frontend/nginx/nginx.conf",
  "@app/server": "packages/server/src/create-app.ts",
  "@app/test-support": "packages/test-support/src/ports.ts",
  "@app/tsconfig": "packages/tsconfig/base.json",
  "@app/visit-history": "packages/visit-history/src/check.ts",
};
/** Files outside any package that a stack under test is built or run from. */
const STACK_FILES = [
  ".dockerignore",
  "package.json",
  "pnpm-lock.yaml",
  "pnpm-workspace.yaml",
  "turbo.json",
  "secrets/postgres_password.txt.example",
];

interface Workspace {
  name: string;
  dir: string;
  /** Workspace packages it uses, directly or through others. */
  uses: Set<string>;
}

let copy: string;
let workspaces: Workspace[];
let baseline: Map<string, string>;

/** The workspace packages and what each uses, read from their package.json files. */
async function readWorkspaces(root: string): Promise<Workspace[]> {
  const dirs = ["e2e", "bench"];
  for (const parent of ["apps", "packages"]) {
    for (const entry of await readdir(join(root, parent))) dirs.push(`${parent}/${entry}`);
  }
  const direct = new Map<string, { dir: string; deps: string[] }>();
  for (const dir of dirs) {
    const manifest = JSON.parse(await readFile(join(root, dir, "package.json"), "utf8"));
    const all = { ...manifest.dependencies, ...manifest.devDependencies } as Record<string, string>;
    const deps = Object.keys(all).filter((name) => all[name]?.startsWith("workspace:"));
    direct.set(manifest.name, { dir, deps });
  }
  return [...direct].map(([name, { dir, deps }]) => {
    const uses = new Set<string>();
    const visit = (dep: string) => {
      if (uses.has(dep)) return;
      uses.add(dep);
      for (const next of direct.get(dep)?.deps ?? []) visit(next);
    };
    deps.forEach(visit);
    return { name, dir, uses };
  });
}

/** taskId -> hash of every test and typecheck task a package implements. */
async function hashes(): Promise<Map<string, string>> {
  const { stdout } = await run(
    join(REPO_ROOT, "node_modules/.bin/turbo"),
    ["run", ...TASKS, "--dry=json"],
    {
      cwd: copy,
      env: { ...process.env, TURBO_TELEMETRY_DISABLED: "1" },
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  const { tasks } = JSON.parse(stdout) as {
    tasks: { taskId: string; task: string; command: string; hash: string }[];
  };
  return new Map(
    tasks
      .filter((t) => TASKS.includes(t.task) && t.command !== "<NONEXISTENT>")
      .map((t) => [t.taskId, t.hash]),
  );
}

/** The tasks whose hash an edit of `file` (a line appended) changes; the file is restored. */
async function changedBy(file: string): Promise<string[]> {
  const path = join(copy, file);
  const original = await readFile(path);
  await writeFile(path, Buffer.concat([original, Buffer.from("\n")]));
  try {
    const after = await hashes();
    expect([...after.keys()].sort()).toEqual([...baseline.keys()].sort());
    return [...after].filter(([task, hash]) => baseline.get(task) !== hash).map(([t]) => t);
  } finally {
    await writeFile(path, original);
  }
}

/** The test and typecheck tasks of the packages that are `name` or use it. */
function tasksOfUsers(name: string): string[] {
  return workspaces
    .filter((w) => w.name === name || w.uses.has(name))
    .flatMap((w) => TASKS.map((task) => `${w.name}#${task}`))
    .filter((task) => baseline.has(task));
}

beforeAll(async () => {
  copy = await copyRepository("turbo-cache");
  workspaces = await readWorkspaces(copy);
  baseline = await hashes();
  // The check means something only if the tasks it compares exist.
  expect(baseline.has("@app/counter#test")).toBe(true);
  expect(baseline.has("@app/e2e#test")).toBe(true);
});
afterAll(async () => {
  if (copy) await rm(copy, { recursive: true, force: true });
});

describe("Turborepo task hashes", () => {
  it("lists a source to edit for every workspace package", () => {
    expect(workspaces.map((w) => w.name).sort()).toEqual(Object.keys(SOURCE).sort());
  });

  it.each(Object.entries(SOURCE))(
    "an edit in %s changes the tasks of every package using it, and no other",
    async (name, file) => {
      const users = tasksOfUsers(name);
      // The stacks are built from every app and package; the checks read code lines the
      // docs link to, in the bench too.
      const e2e = /^(apps|packages)\//.test(file)
        ? ["@app/e2e#test", "@app/e2e#test:e2e"]
        : /^bench\//.test(file)
          ? ["@app/e2e#test"]
          : [];
      const expected = [...new Set([...users, ...e2e])].sort();
      expect(expected.length).toBeGreaterThan(0);
      expect((await changedBy(file)).sort()).toEqual(expected);
    },
  );

  it("an edit in any compose file, Dockerfile or infra/ file changes both e2e tiers' hashes", async () => {
    const { stdout } = await run("git", ["ls-files"], { cwd: REPO_ROOT });
    const files = stdout
      .split("\n")
      .filter((f) => /^docker-compose[^/]*\.yml$|^apps\/[^/]+\/Dockerfile$|^infra\//.test(f));
    expect(files).toEqual(
      expect.arrayContaining(["docker-compose.yml", "apps/counter/Dockerfile", "infra/rollout.sh"]),
    );
    for (const file of [...files, ...STACK_FILES]) {
      expect({ file, changed: await changedBy(file) }).toEqual({
        file,
        changed: expect.arrayContaining(["@app/e2e#test", "@app/e2e#test:e2e"]),
      });
    }
  });

  it("an edit in docs/ re-runs the checks that read the docs, and the stacks only for the pages they run", async () => {
    // The docs links and the tutorial map read every page; the stacks start none of them...
    expect(await changedBy("docs/COUNTER.md")).toEqual(["@app/e2e#test"]);
    // ...but the blocks readme-production.test.ts and dev-stack.test.ts copy and run.
    for (const file of ["README.md", "docs/PRODUCTION.md", "docs/TROUBLESHOOTING.md"])
      expect({ file, changed: (await changedBy(file)).sort() }).toEqual({
        file,
        changed: ["@app/e2e#test", "@app/e2e#test:e2e"],
      });
  });

  it("an edit in a check re-runs the checks only, an edit in a stack test the stacks only", async () => {
    expect((await changedBy("e2e/test/docs-links.test.ts")).sort()).toEqual([
      "@app/e2e#test",
      "@app/e2e#typecheck",
    ]);
    expect((await changedBy("e2e/test/stacks/dev-stack.test.ts")).sort()).toEqual([
      "@app/e2e#test:e2e",
      "@app/e2e#typecheck",
    ]);
  });
});
