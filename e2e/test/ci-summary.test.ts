import { execFile } from "node:child_process";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "./support/compose.ts";

const run = promisify(execFile);

// .ci/test-summary.sh on logs in the format of `pnpm test` (vitest's default reporter
// through Turborepo's prefixes): the total it prints, and when it fails CI.

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ci-summary-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function summary(log: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const file = join(dir, "test.log");
  await writeFile(file, `${log.join("\n")}\n`);
  try {
    const { stdout, stderr } = await run("bash", [join(REPO_ROOT, ".ci/test-summary.sh"), file]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const {
      code,
      stdout = "",
      stderr = "",
    } = error as {
      code: number;
      stdout?: string;
      stderr?: string;
    };
    return { code, stdout, stderr };
  }
}

const SUPPORT = [
  "@app/test-support:test:  ✓ test/support.test.ts (4 tests) 591ms",
  "@app/test-support:test:  Test Files  1 passed (1)",
  "@app/test-support:test:       Tests  4 passed (4)",
];
const E2E_WITH_SWARM_SKIPPED = [
  "@app/e2e:test:e2e:  ✓ test/stacks/dev-stack.test.ts (33 tests) 30512ms",
  "@app/e2e:test:e2e:  ↓ test/stacks/swarm.test.ts (4 tests | 4 skipped)",
  "@app/e2e:test:e2e:  Test Files  1 passed | 1 skipped (2)",
  "@app/e2e:test:e2e:       Tests  33 passed | 4 skipped (37)",
];

describe(".ci/test-summary.sh", () => {
  it("prints passed, failed and skipped tests summed over the packages", async () => {
    const result = await summary([
      ...SUPPORT,
      "@app/backend:test:  ❯ test/app.test.ts (11 tests | 1 failed) 80ms",
      "@app/backend:test:  Test Files  1 failed (1)",
      "@app/backend:test:       Tests  1 failed | 10 passed (11)",
      "@app/backend:test: ⎯⎯⎯⎯⎯⎯⎯ Failed Tests 1 ⎯⎯⎯⎯⎯⎯⎯",
    ]);
    expect(result).toEqual({ code: 0, stdout: "14 passed, 1 failed, 0 skipped\n", stderr: "" });
  });

  it("accepts the opt-in Swarm test skipped, and says so", async () => {
    const result = await summary([...SUPPORT, ...E2E_WITH_SWARM_SKIPPED]);
    expect(result).toEqual({
      code: 0,
      stdout:
        "37 passed, 0 failed, 4 skipped\nSkipped (opt-in): @app/e2e test/stacks/swarm.test.ts\n",
      stderr: "",
    });
  });

  it("fails on any other skipped test file, naming it", async () => {
    const result = await summary([
      "@app/counter:test:  ✓ test/app.test.ts (12 tests) 300ms",
      "@app/counter:test:  ↓ test/faults.integration.test.ts (6 tests | 6 skipped)",
      "@app/counter:test:  Test Files  1 passed | 1 skipped (2)",
      "@app/counter:test:       Tests  12 passed | 6 skipped (18)",
      ...E2E_WITH_SWARM_SKIPPED,
    ]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("45 passed, 0 failed, 10 skipped\n");
    expect(result.stderr).toBe(
      "Skipped, and not an opt-in test file: @app/counter test/faults.integration.test.ts\n" +
        "Tests skipped outside the opt-in files: 6.\n",
    );
  });

  it("fails on a test skipped in a file that ran", async () => {
    const result = await summary([
      ...SUPPORT,
      "@app/backend:test:  ✓ test/app.test.ts (11 tests | 1 skipped) 80ms",
      "@app/backend:test:  Test Files  1 passed (1)",
      "@app/backend:test:       Tests  10 passed | 1 skipped (11)",
    ]);
    expect(result).toEqual({
      code: 1,
      stdout: "14 passed, 0 failed, 1 skipped\n",
      stderr: "Tests skipped outside the opt-in files: 1.\n",
    });
  });

  it("fails when the summaries count skipped files it cannot name", async () => {
    const result = await summary([
      "@app/e2e:test:  Test Files  1 passed | 1 skipped (2)",
      "@app/e2e:test:       Tests  33 passed | 4 skipped (37)",
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("Could not tell which test files were skipped");
  });
});

// .ci/test.sh (`pnpm check`'s last step, and so .ci/run's) with a stand-in `pnpm` first on
// PATH that prints a given log and exits with a given code for each tier (`pnpm test`,
// `pnpm test:e2e`): both tiers run, the skip check is applied to what both printed, and
// no failure hides another.
describe(".ci/test.sh", () => {
  type Tier = { log: string[]; exit: number };
  let runs = 0;
  async function testSh(tiers: { test: Tier; "test:e2e": Tier }) {
    const bin = join(dir, `bin-${++runs}`);
    await mkdir(bin, { recursive: true });
    const cases: string[] = [];
    for (const [tier, { log, exit }] of Object.entries(tiers)) {
      const file = join(bin, `${tier.replace(":", "-")}.log`);
      await writeFile(file, `${log.join("\n")}\n`);
      cases.push(`  ${tier}) cat "${file}"; exit ${exit} ;;`);
    }
    await writeFile(
      join(bin, "pnpm"),
      `#!/bin/sh\ncase "$1" in\n${cases.join("\n")}\n  *) exit 99 ;;\nesac\n`,
    );
    await chmod(join(bin, "pnpm"), 0o755);
    try {
      const { stdout, stderr } = await run("bash", [join(REPO_ROOT, ".ci/test.sh")], {
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failure = error as { code?: number; stdout?: string; stderr?: string };
      return {
        code: failure.code ?? 1,
        stdout: failure.stdout ?? "",
        stderr: failure.stderr ?? "",
      };
    }
  }
  const pass = (log: string[]): Tier => ({ log, exit: 0 });

  it("runs both tiers, printing each one's time and the total over both", async () => {
    const result = await testSh({ test: pass(SUPPORT), "test:e2e": pass(E2E_WITH_SWARM_SKIPPED) });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^pnpm test: \d+ s$/m);
    expect(result.stdout).toMatch(/^pnpm test:e2e: \d+ s$/m);
    expect(result.stdout).toContain("37 passed, 0 failed, 4 skipped\n");
  });

  it("fails a passing run that skipped another test", async () => {
    const result = await testSh({
      test: pass([
        ...SUPPORT.slice(0, 1),
        "@app/test-support:test:  Test Files  1 passed (1)",
        "@app/test-support:test:       Tests  3 passed | 1 skipped (4)",
      ]),
      "test:e2e": pass(E2E_WITH_SWARM_SKIPPED),
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("Tests skipped outside the opt-in files: 1.");
  });

  it("fails when pnpm test failed, still running the stacks and printing the total", async () => {
    const result = await testSh({
      test: { log: SUPPORT, exit: 1 },
      "test:e2e": pass(E2E_WITH_SWARM_SKIPPED),
    });
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("pnpm test:e2e: ");
    expect(result.stdout).toContain("37 passed, 0 failed, 4 skipped\n");
  });

  it("fails when pnpm test:e2e failed, after printing the total", async () => {
    const result = await testSh({ test: pass(SUPPORT), "test:e2e": { log: [], exit: 1 } });
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("4 passed, 0 failed, 0 skipped\n");
  });
});
