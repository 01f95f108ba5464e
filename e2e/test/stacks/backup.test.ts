import { execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { copyFile, readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { eventually, makeTestPki } from "@app/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { postgresCount } from "../support/compose.ts";
import { TrustingClient } from "../support/https.ts";
import { PROD_FILES, prepareProductionSecrets, productionStack } from "../support/production.ts";

const run = promisify(execFile);

// Backups of the production stack, proven by losing the database: infra/backup.sh,
// infra/restore.sh and the scheduled backup service. One stack for every test, in this
// order.
//
// The counter caches a count for an hour here (an extra Compose file in the copy): longer
// than the whole test, so a restore that left the cached count in Redis would show it,
// instead of it expiring unseen while the restore runs.
const CACHE_FILE = "docker-compose.e2e-cache.yml";
const { stack, url } = await productionStack({ extraFiles: [CACHE_FILE] });
let client: TrustingClient;
/** BACKUP_DIR, the default one: backups/ in the project directory. */
let backupDir: string;

beforeAll(async () => {
  const pki = await makeTestPki();
  client = new TrustingClient(pki.caCertificate);
  // The secrets and the backup directory, as docs/PRODUCTION.md's first start.
  await prepareProductionSecrets(stack, pki);
  await writeFile(
    join(stack.directory, CACHE_FILE),
    "services:\n  counter:\n    environment:\n      CACHE_TTL_SECONDS: 3600\n",
  );
  backupDir = join(stack.directory, "backups");
  await stack.up();
});
afterAll(async () => {
  await client?.close();
  await stack.destroy();
});

/** A visit; any answer but 200 fails the test. */
async function visit(): Promise<number> {
  const res = await client.fetch(`${url}/api/visits`, { method: "POST" });
  const body = await res.json();
  if (res.status !== 200)
    throw new Error(`POST /api/visits: ${res.status} ${JSON.stringify(body)}`);
  return (body as { count: number }).count;
}

/**
 * A visit of the test's setup, counted exactly once however busy the machine: a 5xx
 * (the counter's 1 s PostgreSQL deadline) is retried with the same Idempotency-Key.
 */
async function setupVisit(): Promise<number> {
  const key = randomUUID();
  return eventually(async () => {
    const res = await client.fetch(`${url}/api/visits`, {
      method: "POST",
      headers: { "Idempotency-Key": key },
    });
    const body = await res.json();
    expect(res.status, JSON.stringify(body)).toBe(200);
    return (body as { count: number }).count;
  }, 30_000);
}

async function count(): Promise<number> {
  const res = await client.fetch(`${url}/api/visits`);
  const body = await res.json();
  if (res.status !== 200) throw new Error(`GET /api/visits: ${res.status} ${JSON.stringify(body)}`);
  return (body as { count: number }).count;
}

/** The good backups in BACKUP_DIR (what the service counts), oldest first. */
async function backups(): Promise<string[]> {
  return (await readdir(backupDir))
    .filter((name) => /^counter-\d{8}T\d{6}Z\.dump$/.test(name))
    .sort();
}

/** pg_restore reads the whole backup (table of contents and data), in the backup container. */
async function readable(name: string): Promise<void> {
  await stack.compose([
    "exec",
    "-T",
    "backup",
    "pg_restore",
    "--file=/dev/null",
    `/backups/${name}`,
  ]);
}

async function runningCounters(): Promise<number> {
  const ids = (await stack.compose(["ps", "--quiet", "--status", "running", "counter"])).trim();
  return ids === "" ? 0 : ids.split("\n").length;
}

/** The copy of a backup "off the host", where neither retention nor a lost volume reach it. */
let offHost = "";
let backupCount = 0;

/** psql in the db container as `user` (over its socket), one statement, unaligned rows. */
async function sql(user: string, statement: string): Promise<string> {
  const output = await stack.compose([
    ...["exec", "-T", "db", "psql", `--username=${user}`, "--dbname=counter"],
    ...["--no-psqlrc", "--tuples-only", "--no-align", "-v", "ON_ERROR_STOP=1"],
    `--command=${statement}`,
  ]);
  return output.trim();
}

/** The migrate job's log lines (every run of its container, oldest first). */
async function migrateLog(): Promise<string> {
  return stack.compose(["logs", "--no-color", "migrate"]);
}

/** A counter replica's /readyz, from inside its container: status and body. */
async function readiness(): Promise<string> {
  return stack.compose([
    ...["exec", "-T", "counter", "node", "-e"],
    "fetch('http://127.0.0.1:' + process.env.PORT + '/readyz').then(async (r) => console.log(r.status, await r.text()))",
  ]);
}

describe("the schema (the migrate job, apps/counter/migrations)", () => {
  it("`up --wait` on an empty volume ran the migrations once; a second `up` has nothing to migrate", async () => {
    expect(await sql("counter", "SELECT name FROM pgmigrations ORDER BY id")).toBe("0001_baseline");
    expect(await migrateLog()).toMatch(/migrate: applied 0001_baseline/);
    expect(await count()).toBe(0);
    await stack.up();
    const log = await migrateLog();
    expect(log).toMatch(/migrate: nothing to migrate/);
    expect(log.match(/migrate: applied/g)).toHaveLength(1);
    expect(await sql("counter", "SELECT count(*) FROM pgmigrations")).toBe("1");
    // The tables belong to the owner, and the counter's role cannot drop them.
    expect(
      await sql(
        "counter",
        "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'visit_counts'",
      ),
    ).toBe("counter_owner");
    await expect(sql("counter", "DROP TABLE visit_requests")).rejects.toThrow(
      /must be owner of table visit_requests/,
    );
  });

  it("a migration that fails halfway: rollout.sh stops before new counters, the old ones serve, the schema as before", {
    timeout: 600_000,
  }, async () => {
    const migration = join(stack.directory, "apps/counter/migrations/0002_broken.sql");
    await writeFile(
      migration,
      "-- Up Migration\nALTER TABLE visit_counts ADD COLUMN note text;\nSELECT 1 / 0;\n",
    );
    const before = (await stack.compose(["ps", "--quiet", "counter"])).trim().split("\n").sort();
    try {
      const rolled = await stack.script("infra/rollout.sh", ["counter"]);
      const output = `${rolled.stdout}${rolled.stderr}`;
      expect(rolled.code, output).toBe(1);
      expect(output).toMatch(/division by zero/);
      expect(output).toMatch(/failed while running the migrate job/);
      expect(output).toMatch(/no new container was started, the old ones keep serving/);
    } finally {
      await rm(migration);
      // rollout.sh built the counter's image with the broken file in it: built again
      // without, or a later migrate job (restore.sh's) would run it.
      await stack.compose(["build", "counter"]);
    }
    const after = (await stack.compose(["ps", "--all", "--quiet", "counter"]))
      .trim()
      .split("\n")
      .sort();
    expect(after).toEqual(before);
    expect(await sql("counter", "SELECT name FROM pgmigrations ORDER BY id")).toBe("0001_baseline");
    expect(
      await sql(
        "counter",
        "SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'",
      ),
    ).toBe("0");
    const served = await setupVisit();
    expect(served).toBeGreaterThan(0);
  });

  it("Ctrl-C during a migration: rollout.sh stops, nothing new is left, the migration is rolled back", {
    timeout: 600_000,
  }, async () => {
    const migration = join(stack.directory, "apps/counter/migrations/0002_slow.sql");
    await writeFile(
      migration,
      "-- Up Migration\nALTER TABLE visit_counts ADD COLUMN note text;\nSELECT pg_sleep(120);\n",
    );
    const before = (await stack.compose(["ps", "--all", "--quiet", "counter"])).trim();
    let result: { code: number | null; output: string };
    try {
      // As a terminal runs it: its own process group, SIGINT to all of it once the slow
      // migration is under way (the job logs each file it starts).
      const child = spawn("bash", ["infra/rollout.sh", "counter"], {
        cwd: stack.directory,
        env: stack.commandEnvironment({
          COMPOSE_PROJECT_NAME: stack.name,
          COMPOSE_FILE: [...PROD_FILES, CACHE_FILE].join(":"),
        }),
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let output = "";
      let interrupted = false;
      const collect = (chunk: Buffer) => {
        output += chunk.toString();
        if (!interrupted && /MIGRATION 0002_slow \(UP\)/.test(output) && child.pid) {
          interrupted = true;
          process.kill(-child.pid, "SIGINT");
        }
      };
      child.stdout.on("data", collect);
      child.stderr.on("data", collect);
      result = await new Promise((resolve) =>
        child.on("close", (code) => resolve({ code, output })),
      );
    } finally {
      await rm(migration);
      // The image rollout.sh built holds the slow file: built again without it.
      await stack.compose(["build", "counter"]);
    }
    expect(result.code, result.output).toBe(130);
    expect(result.output).toMatch(/interrupted \(SIGINT\) while running the migrate job/);
    expect(result.output).toMatch(/no new container was started, the old ones keep serving/);
    expect((await stack.compose(["ps", "--all", "--quiet", "counter"])).trim()).toBe(before);
    // The job's session ends (client_connection_check_interval), its transaction undone.
    await eventually(async () => {
      expect(
        await sql(
          "postgres",
          "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'migrate'",
        ),
      ).toBe("0");
    }, 30_000);
    expect(await sql("counter", "SELECT count(*) FROM pgmigrations")).toBe("1");
    expect(
      await sql(
        "counter",
        "SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'",
      ),
    ).toBe("0");
    // No run container of the job is left either.
    expect(
      (await stack.compose(["ps", "--all", "--quiet", "migrate"])).trim().split("\n"),
    ).toHaveLength(1);
    expect(await setupVisit()).toBeGreaterThan(0);
  });
});

describe("backups (infra/backup.sh, infra/restore.sh, the backup service)", () => {
  it("restores a backup into a database whose volume was deleted", {
    timeout: 600_000,
  }, async () => {
    for (let i = 0; i < 5; i++) backupCount = await setupVisit();
    const made = await stack.script("infra/backup.sh");
    expect(made.code, made.stderr).toBe(0);
    const name = made.stderr.match(/backup: (counter-\S+\.dump): \d+ bytes/)?.[1];
    expect(name, made.stderr).toBeDefined();
    offHost = join(stack.directory, "off-host.dump");
    await copyFile(join(backupDir, name as string), offHost);

    // Visits after the backup: these are what the restore loses.
    for (let i = 0; i < 3; i++) await setupVisit();
    expect(await count()).toBe(backupCount + 3);

    // The disk is lost: the database's volume is deleted. As docs/PRODUCTION.md says,
    // the database alone on a new volume, the restore, then the rest: no counter ever
    // counts from the new volume's 0.
    await stack.compose(["down", "--timeout", "10"]);
    await run("docker", ["volume", "rm", `${stack.name}_db-data`]);
    let started = performance.now();
    await stack.compose(["up", "--detach", "--wait", "db"]);
    const dbUp = (performance.now() - started) / 1000;

    const restored = await stack.script("infra/restore.sh", [offHost]);
    console.info(`restore.sh (${restored.seconds.toFixed(1)} s):\n${restored.stderr}`);
    expect(restored.code, restored.stderr).toBe(0);
    // Nothing to stop or start: no counter ran on the new volume.
    expect(restored.stderr).not.toMatch(/stopped \d+ counter replica/);
    // The backup's schema is this build's: the migrate job has nothing to do.
    expect(restored.stderr).toMatch(/migrate: nothing to migrate/);
    expect(restored.stderr).toMatch(/restored .* \(one transaction\)/);
    expect(restored.stderr).toMatch(/done in [\d.]+ s/);
    started = performance.now();
    await stack.up();
    console.info(
      `after a lost disk: up -d db ${dbUp.toFixed(1)} s, restore.sh ${restored.seconds.toFixed(1)} s, ` +
        `up --wait ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    await client.reconnect();
    // The backup's count, not the 3 visits lost.
    expect(await count()).toBe(backupCount);
    expect(await runningCounters()).toBe(2);

    // Counting goes on from it, and no request fails once the counters are back.
    const numbers: number[] = [];
    for (let i = 0; i < 10; i++) {
      numbers.push(await visit());
      await count();
    }
    expect(numbers).toEqual(Array.from({ length: 10 }, (_, i) => backupCount + 1 + i));
    expect(await postgresCount(stack)).toBe(backupCount + 10);
  });

  it("refuses a truncated, a random or another major version's file, and changes nothing", async () => {
    const before = await setupVisit();
    const bad = join(stack.directory, "bad.dump");
    const cases: [string, () => Promise<void>, RegExp][] = [
      // Cut just short of its end: its table of contents is whole, its data is not.
      [
        "truncated",
        async () => {
          await copyFile(offHost, bad);
          await truncate(bad, (await stat(offHost)).size - 30);
        },
        /is incomplete or damaged/,
      ],
      [
        "random",
        async () => {
          const { stdout } = await run("openssl", ["rand", "-base64", "6000"]);
          await writeFile(bad, stdout);
        },
        /is not a backup pg_restore can read: .*valid archive/,
      ],
      // The server version in the file's header, one major version down (same length).
      [
        "another major version",
        async () => {
          const major = await serverMajor();
          const dump = await readFile(offHost);
          const at = dump.indexOf(`${major}.`);
          expect(at).toBeGreaterThan(0);
          expect(at).toBeLessThan(100);
          dump.write(String(major - 1), at);
          await writeFile(bad, dump);
        },
        /was dumped from PostgreSQL \d+\.\S+, the server runs .*another major version/,
      ],
    ];
    for (const [what, make, message] of cases) {
      await make();
      const refused = await stack.script("infra/restore.sh", [bad]);
      expect(refused.code, `${what}: ${refused.stderr}`).toBe(1);
      expect(refused.stderr, what).toMatch(message);
      expect(refused.stderr, what).toMatch(/nothing was changed/);
      expect(await runningCounters(), what).toBe(2);
      expect(await count(), what).toBe(before);
    }
    expect(await postgresCount(stack)).toBe(before);
  });

  it("backs up on schedule, keeps the newest BACKUP_KEEP, and turns unhealthy without the database", {
    timeout: 300_000,
  }, async () => {
    const env = { BACKUP_INTERVAL: "2s", BACKUP_KEEP: "2" };
    const since = new Set(await backups());
    await stack.compose(["up", "--detach", "--no-deps", "--wait", "backup"], { env });

    // Every good file seen from now on, until three new ones were and the older ones are
    // deleted (a new file is renamed into place first, then the oldest go: for a moment
    // there are BACKUP_KEEP + 1, never fewer than BACKUP_KEEP).
    const seen = new Set<string>();
    const present = await eventually(async () => {
      const now = await backups();
      for (const name of now) if (!since.has(name)) seen.add(name);
      expect(seen.size).toBeGreaterThanOrEqual(3);
      expect(now).toHaveLength(2);
      return now;
    }, 60_000);
    const newest = [...seen].sort();
    expect(present).toEqual(newest.slice(-2));
    expect(present).not.toContain(newest[0]);
    for (const name of present) await readable(name);

    const backup = (await stack.compose(["ps", "--quiet", "backup"])).trim();
    const health = async () =>
      (
        await run("docker", ["inspect", "--format", "{{.State.Health.Status}}", backup])
      ).stdout.trim();
    expect(await health()).toBe("healthy");
    await stack.compose(["stop", "db"]);
    try {
      // Two intervals (4 s) without a backup, then two failed probes (10 s apart).
      await eventually(async () => expect(await health()).toBe("unhealthy"), 60_000);
    } finally {
      await stack.compose(["start", "db"]);
    }
    const { stdout: probes } = await run("docker", [
      "inspect",
      "--format",
      "{{range .State.Health.Log}}{{.Output}}{{end}}",
      backup,
    ]);
    expect(probes).toMatch(/newest: counter-\S+\.dump, \d+ s old \(limit 4 s\)/);
  });

  it("restores a backup made before versioned migrations: owner, history and count right", {
    timeout: 600_000,
  }, async () => {
    // The database as the previous version left it: tables and function owned by the
    // counter, no pgmigrations, the function that re-created a missing row.
    const before = await setupVisit();
    await sql(
      "postgres",
      `DROP TABLE pgmigrations;
       ALTER TABLE visit_counts OWNER TO counter; ALTER TABLE visit_requests OWNER TO counter;
       ALTER FUNCTION count_visits(text, text[], integer, timestamptz, integer) OWNER TO counter`,
    );
    const made = await stack.script("infra/backup.sh");
    expect(made.code, made.stderr).toBe(0);
    const name = made.stderr.match(/backup: (counter-\S+\.dump): \d+ bytes/)?.[1] as string;
    const old = join(stack.directory, "before-migrations.dump");
    await copyFile(join(backupDir, name), old);
    // Put back as it was, then a newer state that the restore must replace.
    await stack.script("infra/restore.sh", [offHost]);
    await setupVisit();
    // Read: the count is cached, so the restore has a key to delete.
    await count();

    const restored = await stack.script("infra/restore.sh", [old]);
    console.info(`restore.sh (${restored.seconds.toFixed(1)} s):\n${restored.stderr}`);
    expect(restored.code, restored.stderr).toBe(0);
    // Into the running stack: the counters out of service, the cached count gone, then
    // back, and served through Nginx, whose resolver may still hold no replica (seen:
    // a read answered 502 when restore.sh stopped at the replicas' own reads).
    expect(restored.stderr).toMatch(/stopped 2 counter replica/);
    expect(restored.stderr).toMatch(/emptied the cached count \(deleted: cached-count:visits\)/);
    expect(restored.stderr).toMatch(/started 2 counter replica\(s\): healthy and reading/);
    expect(restored.stderr).toMatch(/Nginx serves the count again, .*: \{"count":\d+\}/);
    expect(restored.stderr).toMatch(/done in [\d.]+ s/);
    expect(await runningCounters()).toBe(2);
    expect(restored.stderr).toMatch(/predates versioned migrations/);
    expect(restored.stderr).toMatch(/db-setup and the migrate job ran/);
    expect(await sql("counter", "SELECT name FROM pgmigrations ORDER BY id")).toBe("0001_baseline");
    expect(
      await sql(
        "counter",
        "SELECT string_agg(DISTINCT pg_get_userbyid(relowner), ',') FROM pg_class WHERE relname IN ('visit_counts', 'visit_requests')",
      ),
    ).toBe("counter_owner");
    expect(
      await sql(
        "counter",
        "SELECT prosrc LIKE '%counter row missing%' FROM pg_proc WHERE proname = 'count_visits'",
      ),
    ).toBe("t");
    expect(await count()).toBe(before);
    expect(await visit()).toBe(before + 1);
  });

  it("tables dropped at runtime: visits 503, not ready, nothing re-created; restore.sh brings them back", {
    timeout: 600_000,
  }, async () => {
    await setupVisit();
    await sql(
      "counter_owner",
      "DROP TABLE visit_counts, visit_requests; DROP FUNCTION count_visits(text, text[], integer, timestamptz, integer)",
    );
    for (let i = 0; i < 3; i++) {
      const res = await client.fetch(`${url}/api/visits`, { method: "POST" });
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({ error: expect.stringMatching(/unavailable/) });
    }
    expect(await readiness()).toMatch(/^503 .*visit_counts/);
    expect(
      await sql(
        "counter",
        "SELECT to_regclass('visit_counts') IS NULL AND to_regclass('visit_requests') IS NULL",
      ),
    ).toBe("t");
    // The way back is a restore (here the first test's backup, without its later visits).
    const restored = await stack.script("infra/restore.sh", [offHost]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(await count()).toBe(backupCount);
    expect(await visit()).toBe(backupCount + 1);
  });
});

async function serverMajor(): Promise<number> {
  const output = await stack.compose([
    ...["exec", "-T", "db", "psql", "--username=counter", "--dbname=counter"],
    ...["--tuples-only", "--no-align", "--command=SHOW server_version_num"],
  ]);
  return Math.floor(Number(output.trim()) / 10_000);
}
