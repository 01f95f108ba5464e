import { copyFile, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { loadCounterConfig } from "../src/config.ts";
import { MIGRATIONS_DIR } from "../src/migrations.ts";
import { PostgresStore } from "../src/postgres-store.ts";
import { REQUIRED_MIGRATION } from "../src/schema.ts";
import {
  applyRoles,
  migrateDatabase,
  OWNER_CREDENTIALS,
  POSTGRES_CREDENTIALS,
  type StoreContainer,
  startPostgres,
  superuserSql,
  testLogger,
} from "./support/containers.ts";

// The migrate job and the two roles, against a real PostgreSQL. Each test has its own
// database in one container (roles.sql applied to it, as db-setup does), so the schema
// one test changes is not the next one's.
let postgres: StoreContainer;
let databases = 0;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  postgres = await startPostgres({ migrate: false });
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await postgres?.remove();
});

/** A new database with the roles set up, not migrated. */
/**
 * The recipe of docs/COUNTER.md for an index on a live table: CONCURRENTLY, which cannot
 * run in a transaction block (noTransaction()), after dropping an INVALID index a failed
 * build left under its name, which IF NOT EXISTS would otherwise accept.
 */
const INDEX_MIGRATION = `export const up = (pgm) => {
  pgm.noTransaction();
  pgm.sql(\`DO $$ BEGIN
    IF EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass('visit_requests_created_at') AND NOT indisvalid)
    THEN DROP INDEX visit_requests_created_at; END IF;
  END $$\`);
  pgm.sql("CREATE INDEX CONCURRENTLY IF NOT EXISTS visit_requests_created_at ON visit_requests (created_at)");
};
`;

async function freshDatabase(): Promise<string> {
  const database = `migrations_${++databases}`;
  await applyRoles(postgres, database);
  return database;
}

function client(credentials: { user: string; password: string }, database: string) {
  const connected = new pg.Client({
    host: postgres.host,
    port: postgres.port,
    ...credentials,
    database,
  });
  cleanups.push(() => connected.end());
  return connected.connect().then(() => connected);
}
const asCounter = (database: string) => client(POSTGRES_CREDENTIALS, database);

/** One statement as the owner, on a connection of its own (the role may hold only 3). */
async function ownerQuery(database: string, sql: string) {
  const owner = new pg.Client({
    host: postgres.host,
    port: postgres.port,
    ...OWNER_CREDENTIALS,
    database,
  });
  await owner.connect();
  try {
    return await owner.query(sql);
  } finally {
    await owner.end();
  }
}

function store(database: string, id = "visits"): PostgresStore {
  const created = new PostgresStore(
    loadCounterConfig({
      POSTGRES_HOST: postgres.host,
      POSTGRES_PORT: String(postgres.port),
      POSTGRES_USER: POSTGRES_CREDENTIALS.user,
      POSTGRES_PASSWORD: POSTGRES_CREDENTIALS.password,
      POSTGRES_DB: database,
      COUNTER_ID: id,
    }),
    testLogger("migrations-test"),
  );
  cleanups.push(() => created.close());
  return created;
}

/** The shipped migrations plus `extra` files (name -> content): a later release's. */
async function migrationsWith(extra: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "migrations-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  await copyFile(join(MIGRATIONS_DIR, "0001_baseline.sql"), join(dir, "0001_baseline.sql"));
  for (const [name, content] of Object.entries(extra)) await writeFile(join(dir, name), content);
  return dir;
}

const applied = async (database: string) =>
  (await ownerQuery(database, "SELECT name FROM pgmigrations ORDER BY id")).rows.map(
    (row: { name: string }) => row.name,
  );

describe("the migrate job", () => {
  it("an empty database: the baseline runs once, creates the counter's row at 0; a second run has nothing to do", async () => {
    const database = await freshDatabase();
    const counter = store(database);
    await expect(counter.checkSchema()).rejects.toMatchObject({ code: "SCHEMA_MISSING" });
    expect(await migrateDatabase(postgres, { database })).toEqual(["0001_baseline"]);
    expect(await migrateDatabase(postgres, { database })).toEqual([]);
    expect(await applied(database)).toEqual(["0001_baseline"]);
    await expect(counter.checkSchema()).resolves.toBeUndefined();
    expect(await counter.read()).toBe(0);
    expect((await counter.countBatch([undefined, "k"], 1_000)).count).toBe(2);
  });

  it("REQUIRED_MIGRATION names a shipped migration file (what checkSchema looks for)", async () => {
    const names = (await readdir(MIGRATIONS_DIR)).map((file) => file.replace(/\.(sql|js)$/, ""));
    expect(names).toContain(REQUIRED_MIGRATION);
  });

  it("a volume made before versioned migrations upgrades in place: owner, count and keys kept", async () => {
    const database = await freshDatabase();
    // What that version's roles.sql granted, then its schema as the counter created it.
    await superuserSql(postgres, "GRANT CREATE ON SCHEMA public TO counter", database);
    const fixture = fileURLToPath(
      new URL("fixtures/schema-before-migrations.sql", import.meta.url),
    );
    await postgres.container.copyFilesToContainer([{ source: fixture, target: "/old-schema.sql" }]);
    await postgres.exec([
      "psql",
      "--no-psqlrc",
      "-v",
      "ON_ERROR_STOP=1",
      "-U",
      "postgres",
      "-d",
      database,
      "-c",
      "SET ROLE counter",
      "-f",
      "/old-schema.sql",
      "-c",
      "INSERT INTO visit_counts VALUES ('visits', 500); INSERT INTO visit_requests (counter_id, key, count) VALUES ('visits', 'kept', 480)",
    ]);
    const owners = `SELECT relname, pg_get_userbyid(relowner) AS owner FROM pg_class
      WHERE relname IN ('visit_counts', 'visit_requests') ORDER BY relname`;
    expect((await (await asCounter(database)).query(owners)).rows).toEqual([
      { relname: "visit_counts", owner: "counter" },
      { relname: "visit_requests", owner: "counter" },
    ]);
    const counter = store(database);
    await expect(counter.checkSchema()).rejects.toMatchObject({ code: "SCHEMA_OUTDATED" });

    // The next `up`: db-setup (roles.sql), then the migrate job.
    await applyRoles(postgres, database);
    expect(await migrateDatabase(postgres, { database })).toEqual(["0001_baseline"]);

    const check = await asCounter(database);
    expect((await check.query(owners)).rows).toEqual([
      { relname: "visit_counts", owner: "counter_owner" },
      { relname: "visit_requests", owner: "counter_owner" },
    ]);
    const fn = await check.query(
      "SELECT pg_get_userbyid(proowner) AS owner, count(*) OVER () AS overloads FROM pg_proc WHERE proname = 'count_visits'",
    );
    expect(fn.rows).toEqual([{ owner: "counter_owner", overloads: "1" }]);
    await expect(counter.checkSchema()).resolves.toBeUndefined();
    const batch = await counter.countBatch([undefined, "kept"], 1_000);
    expect(batch.count).toBe(501);
    expect(batch.visits).toEqual([
      { count: 501, replayed: false },
      { count: 480, replayed: true },
    ]);
    // The counter lost what ownership gave it.
    await expect(check.query("DROP TABLE visit_requests")).rejects.toMatchObject({ code: "42501" });
  });

  it("a migration that fails halfway changes nothing: one transaction, not recorded", async () => {
    const database = await freshDatabase();
    await migrateDatabase(postgres, { database });
    const dir = await migrationsWith({
      "0002_broken.sql":
        "-- Up Migration\nALTER TABLE visit_counts ADD COLUMN note text;\nSELECT 1 / 0;\n",
    });
    await expect(migrateDatabase(postgres, { database, dir })).rejects.toMatchObject({
      code: "22012",
    });
    expect(await applied(database)).toEqual(["0001_baseline"]);
    const columns = await ownerQuery(
      database,
      "SELECT column_name FROM information_schema.columns WHERE table_name = 'visit_counts' ORDER BY ordinal_position",
    );
    expect(columns.rows.map((row) => row.column_name)).toEqual(["id", "count"]);
  });

  it("a first run that fails leaves the counter no write on the migrations' record", async () => {
    // node-pg-migrate makes pgmigrations before its transaction: the default privileges
    // grant the counter DML on it, and the baseline's REVOKE rolls back with the run.
    const database = await freshDatabase();
    const dir = await migrationsWith({ "0002_broken.sql": "-- Up Migration\nSELECT 1 / 0;\n" });
    await expect(migrateDatabase(postgres, { database, dir })).rejects.toMatchObject({
      code: "22012",
    });
    const counter = await asCounter(database);
    await expect(
      counter.query("INSERT INTO pgmigrations (name, run_on) VALUES ('0001_baseline', now())"),
    ).rejects.toMatchObject({ code: "42501" });
  });

  it("a migration does not queue behind a visit: it times out on the lock, rolls back, and is retried", async () => {
    const database = await freshDatabase();
    await migrateDatabase(postgres, { database });
    const dir = await migrationsWith({
      "0002_add_note.sql": "-- Up Migration\nALTER TABLE visit_counts ADD COLUMN note text;\n",
    });
    // A batch in flight: the counter's row locked, uncommitted.
    const visit = await asCounter(database);
    await visit.query("BEGIN");
    await visit.query("UPDATE visit_counts SET count = count WHERE id = 'visits'");

    // One try: ALTER TABLE waits lock_timeout for its exclusive lock, then the run fails.
    await expect(
      migrateDatabase(postgres, { database, dir, lockTimeoutMs: 200, attempts: 1 }),
    ).rejects.toMatchObject({ code: "55P03" });
    expect(await applied(database)).toEqual(["0001_baseline"]);

    // Retried: the visit commits when the job reports its first failure, the second try passes.
    const logger = testLogger("migrate-retry");
    const retried = vi.fn();
    vi.spyOn(logger, "warn").mockImplementation(((...args: unknown[]) => {
      // (node-pg-migrate's own "Rolling back" warning comes through here too.)
      if (!String(args.at(-1)).includes("trying again")) return;
      retried(...args);
      void visit.query("COMMIT");
    }) as never);
    expect(
      await migrateDatabase(postgres, { database, dir, lockTimeoutMs: 200, attempts: 3, logger }),
    ).toEqual(["0002_add_note"]);
    expect(retried).toHaveBeenCalledTimes(1);
  });

  it("an index on a live table is built CONCURRENTLY, outside the transaction; older builds stay ready", async () => {
    const database = await freshDatabase();
    await migrateDatabase(postgres, { database });
    // An earlier build of the same name that failed (here a unique one, on duplicates)
    // left an INVALID index behind.
    await store(database).countBatch(["a", "b"], 1_000);
    await expect(
      ownerQuery(
        database,
        "CREATE UNIQUE INDEX CONCURRENTLY visit_requests_created_at ON visit_requests (counter_id)",
      ),
    ).rejects.toMatchObject({ code: "23505" });
    const dir = await migrationsWith({ "0002_index_created_at.js": INDEX_MIGRATION });
    expect(await migrateDatabase(postgres, { database, dir })).toEqual(["0002_index_created_at"]);
    const index = await ownerQuery(
      database,
      "SELECT indisvalid FROM pg_index WHERE indexrelid = 'visit_requests_created_at'::regclass",
    );
    expect(index.rows).toEqual([{ indisvalid: true }]);
    // This build needs 0001; the database is at 0002: at least, so ready.
    await expect(store(database).checkSchema()).resolves.toBeUndefined();
  });
});

describe("expand, then contract (docs/COUNTER.md, schema changes)", () => {
  it("migration N+1 (a nullable column, an index built CONCURRENTLY) runs under a stream of visits from build N: none fails", async () => {
    const database = await freshDatabase();
    await migrateDatabase(postgres, { database });
    const dir = await migrationsWith({
      "0002_add_note.sql": "-- Up Migration\nALTER TABLE visit_counts ADD COLUMN note text;\n",
      "0003_index_created_at.js": INDEX_MIGRATION,
    });
    // Build N: this code, which knows nothing of 0002 and 0003.
    const counter = store(database);
    let stop = false;
    const failures: unknown[] = [];
    let counted = 0;
    const stream = async (worker: number) => {
      for (let i = 0; !stop; i++) {
        try {
          await counter.countBatch([`w${worker}-${i}`, undefined], 1_000);
          counted += 2;
        } catch (error) {
          failures.push(error);
        }
      }
    };
    const workers = [0, 1, 2, 3].map(stream);
    // Visits are flowing before the migration starts, and after it finished.
    const flowing = async (atLeast: number) => {
      while (counted < atLeast) await new Promise((resolve) => setImmediate(resolve));
    };
    await flowing(20);
    const applied = await migrateDatabase(postgres, { database, dir, lockTimeoutMs: 200 });
    const afterMigration = counted;
    await flowing(afterMigration + 20);
    stop = true;
    await Promise.all(workers);
    expect(applied).toEqual(["0002_add_note", "0003_index_created_at"]);
    expect(failures).toEqual([]);
    expect(await counter.read()).toBe(counted);
    await expect(counter.checkSchema()).resolves.toBeUndefined();
  });
});

describe("the counter's role", () => {
  it("may count visits and read pgmigrations, and may not DROP, ALTER, TRUNCATE, CREATE or write pgmigrations", async () => {
    const database = await freshDatabase();
    await migrateDatabase(postgres, { database });
    expect((await store(database).countBatch([undefined], 1_000)).count).toBe(1);
    const counter = await asCounter(database);
    const refused = [
      "DROP TABLE visit_counts",
      "ALTER TABLE visit_counts ADD COLUMN x int",
      "TRUNCATE visit_requests",
      "CREATE TABLE intruder (id int)",
      "CREATE TEMP TABLE intruder (id int)",
      "DROP FUNCTION count_visits(text, text[], integer, timestamptz, integer)",
      "DELETE FROM pgmigrations",
      "INSERT INTO pgmigrations (name, run_on) VALUES ('0002_fake', now())",
    ];
    for (const sql of refused) {
      // insufficient_privilege, or must be owner (the same SQLSTATE).
      await expect(counter.query(sql), sql).rejects.toMatchObject({ code: "42501" });
    }
    expect((await counter.query("SELECT count(*)::int AS n FROM pgmigrations")).rows).toEqual([
      { n: 1 },
    ]);
    const owner = await counter.query(
      "SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relname = 'visit_counts'",
    );
    expect(owner.rows).toEqual([{ owner: "counter_owner" }]);
    // What a later migration creates, the counter may use (roles.sql's default
    // privileges): a table and its serial column's sequence.
    await ownerQuery(database, "CREATE TABLE later (id serial PRIMARY KEY, note text)");
    await expect(
      counter.query("INSERT INTO later (note) VALUES ('x') RETURNING id"),
    ).resolves.toMatchObject({
      rows: [{ id: 1 }],
    });
  });
});
