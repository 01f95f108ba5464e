import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { makeTestPki } from "@app/test-support";
import { Agent, fetch } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { postgresCount, psql, waitForBothBackendReplicas } from "../support/compose.ts";
import { PROD_FILES, prepareProductionSecrets, productionStack } from "../support/production.ts";
import { describeFailures, failures, type StreamRecord, startStream } from "../support/stream.ts";

const run = promisify(execFile);

// The production stack under a steady stream of plain clients (GET /api/data and
// POST /api/visits, no retries, no Idempotency-Key) while infra/rollout.sh replaces
// backend and counter with images that differ: no request may fail.
const { stack, url } = await productionStack();
const MESSAGE_SOURCE = "apps/backend/src/app.ts";
const MESSAGE_LINE = /export const MESSAGE = "[^"]*";/;
let dispatcher: Agent;

beforeAll(async () => {
  const pki = await makeTestPki();
  await prepareProductionSecrets(stack, pki);
  await stack.up();
  dispatcher = new Agent({ connect: { ca: pki.caCertificate } });
});
afterAll(async () => {
  await dispatcher?.close();
  await stack.destroy();
});

/** The environment a user runs infra/rollout.sh with: the project and files, and `extra`. */
const rolloutEnv = (extra: Record<string, string> = {}) =>
  stack.commandEnvironment({
    COMPOSE_PROJECT_NAME: stack.name,
    COMPOSE_FILE: PROD_FILES.join(":"),
    ...extra,
  });

/**
 * infra/rollout.sh as a user runs it: plain `docker compose`, the project and files from
 * COMPOSE_PROJECT_NAME and COMPOSE_FILE. Resolves to its exit code and output.
 */
async function rollout(args: string[], extra: Record<string, string> = {}) {
  const started = performance.now();
  try {
    const { stderr } = await run("bash", ["infra/rollout.sh", ...args], {
      cwd: stack.directory,
      env: rolloutEnv(extra),
      timeout: 600_000,
    });
    return { code: 0, output: stderr, seconds: (performance.now() - started) / 1000 };
  } catch (error) {
    const { code = 1, stderr = "" } = error as { code?: number; stderr?: string };
    return { code, output: stderr, seconds: (performance.now() - started) / 1000 };
  }
}

async function setMessage(message: string): Promise<void> {
  const path = join(stack.directory, MESSAGE_SOURCE);
  const source = await readFile(path, "utf8");
  await writeFile(path, source.replace(MESSAGE_LINE, `export const MESSAGE = "${message}";`));
}

/** The counter's image must differ too: a comment that changes its source. */
async function touchCounter(version: string): Promise<void> {
  const path = join(stack.directory, "apps/counter/src/app.ts");
  await writeFile(path, `${await readFile(path, "utf8")}// rollout e2e: ${version}\n`);
}

/** Runs `change` under the stream; returns the records. */
async function underStream(change: () => Promise<void>): Promise<StreamRecord[]> {
  const stream = startStream({ url, dispatcher, clients: 4, rate: 60 });
  await sleep(1_500);
  await change();
  await sleep(1_500);
  return stream.stop();
}

/** For a failure's message: what failed, and Nginx's own error lines. */
async function explain(records: StreamRecord[]): Promise<string> {
  const logs = await stack.compose(["logs", "--no-color", "--since", "5m", "frontend"]);
  const errors = logs.split("\n").filter((line) => /\[(error|warn)\]/.test(line));
  const failed = failures(records).map((r) => `${r.kind} ${r.status || r.error}`);
  return [describeFailures(records), ...failed, ...errors.slice(-10)].join("\n");
}

function summary(records: StreamRecord[]) {
  const visits = records.filter((r) => r.kind === "visit" && r.count !== undefined);
  return {
    requests: records.length,
    failed: failures(records).length,
    visits: visits.map((r) => r.count as number),
    messages: [...new Set(records.map((r) => r.message).filter(Boolean))],
  };
}

describe("rolling update (infra/rollout.sh)", () => {
  it("replaces backend and counter under a steady stream, three times in a row, without a failed request", async () => {
    for (let round = 1; round <= 3; round++) {
      const message = `Hello from Backend API, version ${round}`;
      await setMessage(message);
      await touchCounter(`version ${round}`);
      const before = await postgresCount(stack);
      let result: Awaited<ReturnType<typeof rollout>> | undefined;
      const records = await underStream(async () => {
        result = await rollout(["backend", "counter"]);
      });
      const { requests, failed, visits, messages } = summary(records);
      console.info(
        `rollout ${round}: ${requests} requests, ${failed} failed (${describeFailures(records)}), ` +
          `rollout ${result?.seconds.toFixed(1)} s, messages seen: ${messages.length}`,
      );
      expect(result?.code, result?.output).toBe(0);
      expect(failed, await explain(records)).toBe(0);
      expect(requests).toBeGreaterThan(300);
      // Every number once, and PostgreSQL holds exactly the acknowledged visits.
      expect(new Set(visits).size).toBe(visits.length);
      expect(await postgresCount(stack)).toBe(before + visits.length);
      // The answers switched to the new image during the run.
      expect(messages).toContain(message);
      expect(records.findLast((r) => r.kind === "data")?.message).toBe(message);
      // Back at two replicas each, all on the new image and healthy.
      for (const service of ["backend", "counter"]) {
        const ids = (await stack.compose(["ps", "--quiet", service])).trim().split("\n");
        expect(ids, service).toHaveLength(2);
      }
    }
    // Three rollouts of two image builds each: 33–40 s apiece on 2 cores (the builds are
    // half of it), more than the suite's default budget for one test.
  }, 300_000);

  it("expand, then contract: migration N+1 runs while build N serves, then the rollout, then a build without it on the newer schema; no request fails", async () => {
    // docs/COUNTER.md's rule: a nullable column and an index built CONCURRENTLY, which
    // build N's replicas live with while the migrate job adds them.
    const migration = join(stack.directory, "apps/counter/migrations/0002_e2e_note.js");
    await writeFile(
      migration,
      `export const up = (pgm) => {
  pgm.noTransaction();
  pgm.sql("ALTER TABLE visit_counts ADD COLUMN IF NOT EXISTS note text");
  pgm.sql("CREATE INDEX CONCURRENTLY IF NOT EXISTS visit_requests_e2e ON visit_requests (created_at)");
};
`,
    );
    try {
      await touchCounter("with migration 0002");
      let result: Awaited<ReturnType<typeof rollout>> | undefined;
      const records = await underStream(async () => {
        result = await rollout(["counter"]);
      });
      console.info(
        `rollout with a migration: ${records.length} requests, ${failures(records).length} failed`,
      );
      expect(result?.code, result?.output).toBe(0);
      expect(failures(records).length, await explain(records)).toBe(0);
      expect(records.length).toBeGreaterThan(100);
    } finally {
      await rm(migration);
    }
    expect(await psql(stack, "SELECT name FROM pgmigrations ORDER BY id")).toEqual([
      "0001_baseline",
      "0002_e2e_note",
    ]);
    // A build that knows only 0001 (a rollback, or a release that never had 0002) is
    // ready on the newer schema: at least, not exactly, its version.
    await touchCounter("without migration 0002");
    let back: Awaited<ReturnType<typeof rollout>> | undefined;
    const records = await underStream(async () => {
      back = await rollout(["counter"]);
    });
    expect(back?.code, back?.output).toBe(0);
    expect(await psql(stack, "SELECT count(*) FROM pgmigrations")).toEqual(["2"]);
    expect(failures(records).length, await explain(records)).toBe(0);
    expect((await stack.compose(["ps", "--quiet", "counter"])).trim().split("\n")).toHaveLength(2);
  }, 300_000);

  it("rolls back a new image that does not become healthy; the old replicas keep serving", async () => {
    const previous = (await (await fetch(`${url}/api/data`, { dispatcher })).json()) as {
      message: string;
    };
    // The new image listens on another port than its health check (and Nginx) uses.
    const main = join(stack.directory, "apps/backend/src/main.ts");
    const source = await readFile(main, "utf8");
    await writeFile(main, source.replace("port: config.PORT,", "port: config.PORT + 1000,"));
    await setMessage("Hello from a broken version");
    let result: Awaited<ReturnType<typeof rollout>> | undefined;
    try {
      const records = await underStream(async () => {
        result = await rollout(["backend"], { ROLLOUT_TIMEOUT: "20" });
      });
      console.info(
        `failed rollout: exit ${result?.code} after ${result?.seconds.toFixed(1)} s, ` +
          `${records.length} requests, ${failures(records).length} failed`,
      );
      expect(result?.code).toBe(1);
      expect(result?.output).toMatch(/rolling back/);
      expect(failures(records).length, await explain(records)).toBe(0);
      expect(summary(records).messages).toEqual([previous.message]);
      const ids = (await stack.compose(["ps", "--quiet", "backend"])).trim().split("\n");
      expect(ids).toHaveLength(2);
    } finally {
      await writeFile(main, source);
    }
  });

  it("goes back to the previous version as the README says (IMAGE_TAG=<previous> … --no-build)", async () => {
    // The images the replicas run now become "the previous version", under a tag of their
    // own. (Not this run's tag: a test before may have left a broken build under it.)
    const previousTag = `previous-${stack.name}`;
    const services = ["backend", "counter"];
    const images = services.map((service) => `visit-counter/${service}`);
    for (const [index, service] of services.entries()) {
      const [id] = (await stack.compose(["ps", "--quiet", service])).trim().split("\n");
      const { stdout: running } = await run("docker", [
        "inspect",
        "--format",
        "{{.Image}}",
        id ?? "",
      ]);
      await run("docker", ["tag", running.trim(), `${images[index]}:${previousTag}`]);
    }
    try {
      const previous = summary(await underStream(async () => {})).messages;
      expect(previous).toHaveLength(1);
      await setMessage("Hello from the version that is rolled back");
      await touchCounter("rolled back");
      expect((await rollout(["backend", "counter"])).code).toBe(0);
      // README's command: the production files, the previous tag, nothing built.
      let result: Awaited<ReturnType<typeof rollout>> | undefined;
      const records = await underStream(async () => {
        result = await rollout(["--no-build", "backend", "counter"], { IMAGE_TAG: previousTag });
      });
      console.info(
        `rollback: exit ${result?.code} after ${result?.seconds.toFixed(1)} s, ` +
          `${records.length} requests, ${failures(records).length} failed`,
      );
      expect(result?.code, result?.output).toBe(0);
      expect(failures(records).length, await explain(records)).toBe(0);
      expect(records.findLast((r) => r.kind === "data")?.message).toBe(previous[0]);
      // Two replicas each, all on the previous images.
      for (const [index, service] of ["backend", "counter"].entries()) {
        const ids = (await stack.compose(["ps", "--quiet", service])).trim().split("\n");
        expect(ids, service).toHaveLength(2);
        for (const id of ids) {
          const { stdout } = await run("docker", ["inspect", "--format", "{{.Config.Image}}", id]);
          expect(stdout.trim()).toBe(`${images[index]}:${previousTag}`);
        }
      }
    } finally {
      // Back on this run's tag for the tests after this one, then the extra tag goes.
      await rollout(["--no-build", "backend", "counter"]);
      await run("docker", ["rmi", ...images.map((image) => `${image}:${previousTag}`)]).catch(
        () => {},
      );
    }
  });

  it("for comparison: a plain `up -d --build --wait` of both services, under the same stream", async () => {
    await setMessage("Hello from Backend API, after a plain up");
    await touchCounter("plain up");
    const before = await postgresCount(stack);
    const started = performance.now();
    const records = await underStream(async () => {
      await stack.compose(["up", "--detach", "--build", "--wait", "backend", "counter"]);
    });
    const { requests, failed, visits } = summary(records);
    // Printed for comparison with the rollouts' zero (docs/PRODUCTION.md links here).
    console.info(
      `plain up: ${requests} requests, ${failed} failed (${describeFailures(records)}), ` +
        `${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    // Whatever failed, nothing was counted twice or lost among the answered visits.
    expect(new Set(visits).size).toBe(visits.length);
    const counted = (await postgresCount(stack)) - before;
    expect(counted).toBeGreaterThanOrEqual(visits.length);
    expect(counted).toBeLessThanOrEqual(visits.length + failed);
  });
});

/** A service's containers, running or not: their ids, sorted. */
async function containerIds(service: string): Promise<string[]> {
  const ids = await stack.compose(["ps", "--all", "--quiet", service]);
  return ids.trim().split("\n").filter(Boolean).sort();
}

/**
 * infra/rollout.sh as a terminal runs it, in a process group of its own; once its output
 * matches `at`, SIGINT goes to the whole group, as Ctrl-C sends it to every process of
 * the job (docker compose and docker included). Resolves to its exit code and output.
 */
function interruptedRollout(args: string[], at: RegExp) {
  const child = spawn("bash", ["infra/rollout.sh", ...args], {
    cwd: stack.directory,
    env: rolloutEnv(),
    detached: true,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let output = "";
  let interrupted = false;
  child.stderr.on("data", (chunk: Buffer) => {
    output += chunk.toString();
    if (!interrupted && at.test(output) && child.pid !== undefined) {
      interrupted = true;
      process.kill(-child.pid, "SIGINT");
    }
  });
  return new Promise<{ code: number | null; output: string; interrupted: boolean }>((resolve) =>
    child.on("close", (code) => resolve({ code, output, interrupted })),
  );
}

describe("rollout.sh when something goes wrong", () => {
  const get = (address: string) => fetch(address, { dispatcher });

  /** Two replicas of each Node service, and both backend replicas answering through Nginx. */
  async function expectOneCompleteSet(): Promise<void> {
    expect(await containerIds("backend")).toHaveLength(2);
    expect(await containerIds("counter")).toHaveLength(2);
    await waitForBothBackendReplicas(url, get);
    expect((await get(`${url}/api/visits`)).status).toBe(200);
  }

  it("refuses a ROLLOUT_TIMEOUT that is not digits before anything starts", async () => {
    const before = await containerIds("backend");
    // "x" was arithmetic on an unset variable: an abort after the scale-up, both sets left
    // running. The second ran a command of the caller's choosing.
    for (const value of ["x", "BASH_VERSINFO[$(touch injected)0]+60", "1e3", "0"]) {
      const result = await rollout(["--no-build", "backend"], { ROLLOUT_TIMEOUT: value });
      expect(result.code, value).toBe(2);
      expect(result.output, value).toContain("ROLLOUT_TIMEOUT must be a number of seconds");
    }
    expect(existsSync(join(stack.directory, "injected"))).toBe(false);
    expect(await containerIds("backend")).toEqual(before);
  });

  it("stops at a build that fails, naming the step; nothing that runs changes", async () => {
    const before = await containerIds("backend");
    const path = join(stack.directory, MESSAGE_SOURCE);
    const source = await readFile(path, "utf8");
    await writeFile(path, `${source}export const broken: number = "a type error";\n`);
    try {
      let result: Awaited<ReturnType<typeof rollout>> | undefined;
      const records = await underStream(async () => {
        result = await rollout(["backend"]);
      });
      expect(result?.code, result?.output).toBe(1);
      expect(result?.output).toMatch(/failed while building backend/);
      expect(result?.output).not.toMatch(/all done/);
      expect(await containerIds("backend")).toEqual(before);
      expect(failures(records).length, await explain(records)).toBe(0);
    } finally {
      await writeFile(path, source);
    }
  });

  // Each phase of a service's rollout, and which set must serve after Ctrl-C in it.
  it.each([
    ["the build", /backend: building/, "old"],
    ["the start of the new containers", /backend: starting \d+ new/, "old"],
    ["the wait for them to become healthy", /backend: waiting for \d+ new/, "old"],
    ["the retirement of the old ones", /backend: new container\(s\) healthy/, "new"],
  ] as const)("leaves exactly one complete set after Ctrl-C in %s", async (_phase, at, kept) => {
    const before = await containerIds("backend");
    let result: Awaited<ReturnType<typeof interruptedRollout>> | undefined;
    const records = await underStream(async () => {
      result = await interruptedRollout(["backend"], at);
    });
    console.info(`Ctrl-C at ${at}: exit ${result?.code}, ${describeFailures(records)} failed`);
    expect(result?.interrupted, result?.output).toBe(true);
    expect(result?.code, result?.output).toBe(130);
    const after = await containerIds("backend");
    if (kept === "old") expect(after).toEqual(before);
    else expect(after.filter((id) => before.includes(id))).toEqual([]);
    await expectOneCompleteSet();
    expect(failures(records).length, await explain(records)).toBe(0);
  });
});

// Issue 32: new replicas that cannot serve (a password PostgreSQL refuses, a database
// host that does not exist) must be refused by the rollout, with the reason, while the
// old ones keep serving and no request fails: the new ones must get no client's request.
describe("rollout.sh refuses new replicas that cannot serve", () => {
  const SECRET = "secrets/postgres_counter_password.txt";

  /** A rollout of the counter under the stream, expected to fail: its result and the records. */
  async function refusedRollout(extra: Record<string, string>) {
    const before = await containerIds("counter");
    let result: Awaited<ReturnType<typeof rollout>> | undefined;
    const records = await underStream(async () => {
      result = await rollout(["--no-build", "counter"], extra);
    });
    console.info(
      `refused rollout: exit ${result?.code} after ${result?.seconds.toFixed(1)} s, ` +
        `${records.length} requests, ${describeFailures(records)} failed\n${result?.output}`,
    );
    const visits = records.filter((r) => r.kind === "visit");
    expect(result?.code, result?.output).toBe(1);
    expect(result?.output).not.toMatch(/all done/);
    expect(result?.output).toMatch(/rolling back/);
    // No visit failed, and there were visits to fail.
    expect(failures(records).length, await explain(records)).toBe(0);
    expect(visits.length).toBeGreaterThan(50);
    // The old containers, and only they: nothing new left, running, created or exited.
    expect(await containerIds("counter")).toEqual(before);
    expect((await fetch(`${url}/api/visits`, { method: "POST", dispatcher })).status).toBe(200);
    return result as NonNullable<typeof result>;
  }

  it("a counter password PostgreSQL does not know (no db-setup ran): exit 1 at once, naming the container and 'database login refused'", async () => {
    const path = join(stack.directory, SECRET);
    const password = await readFile(path, "utf8");
    // What a rotation gone wrong looks like: a new secret no job has applied.
    await writeFile(path, "a-password-postgres-never-heard-of\n");
    try {
      const result = await refusedRollout({ ROLLOUT_TIMEOUT: "60" });
      expect(result.output).toMatch(
        /counter: container \S+-counter-\d+ cannot serve; its last health check: .*database login refused: password authentication failed for user/,
      );
      // Refused on the first check that said so, long before the deadline.
      expect(result.seconds).toBeLessThan(40);
    } finally {
      await writeFile(path, password);
    }
  });

  it("a database host that does not exist: exit 1 at ROLLOUT_TIMEOUT, naming the container and the readiness error", async () => {
    // The counter's environment with another host, as an operator's override file would.
    const override = "docker-compose.no-such-db.yml";
    await writeFile(
      join(stack.directory, override),
      "services:\n  counter:\n    environment:\n      POSTGRES_HOST: no-such-db\n",
    );
    const result = await refusedRollout({
      COMPOSE_FILE: [...PROD_FILES, override].join(":"),
      ROLLOUT_TIMEOUT: "20",
    });
    // Waited out (it may heal: a name Docker's DNS drops while a container is stopped),
    // then refused with the reason.
    expect(result.output).toMatch(
      /counter: container \S+-counter-\d+ not healthy within 20 s \(last: starting\); its last health check: .*"postgres":\{"ok":false/,
    );
    expect(result.output).toMatch(/PostgreSQL did not answer|no answer within/);
    expect(result.seconds).toBeLessThan(60);
  });
});
