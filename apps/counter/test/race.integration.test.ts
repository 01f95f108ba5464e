import { createLogger } from "@app/server";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadCounterConfig } from "../src/config.ts";
import { PostgresStore } from "../src/postgres-store.ts";
import {
  counterEnv,
  POSTGRES_CREDENTIALS,
  type StoreContainer,
  startPostgres,
} from "./support/containers.ts";
import { uniqueId, until } from "./support/counter-instance.ts";

// Interleavings inside PostgreSQL, forced with locks held by other sessions: no sleeps,
// each step waits until the batch is seen blocked where the step needs it.
let postgres: StoreContainer;
let sessions: pg.Pool;

beforeAll(async () => {
  postgres = await startPostgres();
  sessions = new pg.Pool({ host: postgres.host, port: postgres.port, ...POSTGRES_CREDENTIALS });
});
afterAll(async () => {
  await sessions?.end();
  await postgres?.remove();
});

/** The backends that `pid` waits for, or [] when it waits for no lock. */
async function blockers(pid: number): Promise<number[]> {
  const { rows } = await sessions.query<{ blockers: number[] }>(
    "SELECT pg_blocking_pids($1) AS blockers",
    [pid],
  );
  return rows[0]?.blockers ?? [];
}

/** The pid of the one backend running count_visits. */
async function batchPid(): Promise<number> {
  const { rows } = await sessions.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE query LIKE '%FROM count_visits(%' AND state = 'active' AND pid <> pg_backend_pid()",
  );
  if (rows.length !== 1) throw new Error(`${rows.length} batches running`);
  return (rows[0] as { pid: number }).pid;
}

describe("count_visits against concurrent sessions", () => {
  it("a key deleted by the expiry cleanup while a batch runs is counted once, and no number is handed out twice", async () => {
    const id = uniqueId("cleanup-race");
    // Deadlines long enough for the steps below: the server's statement_timeout is one.
    const store = new PostgresStore(
      loadCounterConfig({
        ...counterEnv({ postgres, redis: postgres, id }),
        POSTGRES_TIMEOUT_MS: "30000",
        CACHE_TTL_SECONDS: "60",
      }),
      createLogger({ name: "race-test", level: "silent" }),
    );
    try {
      // A new counter's row (the migrate job made only "visits"'s).
      await sessions.query("INSERT INTO visit_counts (id, count) VALUES ($1, 0)", [id]);
      expect((await store.countBatch(["K"], 5_000)).count).toBe(1);

      // Session 1: the cleanup, deleting K's row (expired), not yet committed.
      const cleanup = await sessions.connect();
      // Session 2: holds off every insert into visit_requests until it commits.
      const blocker = await sessions.connect();
      try {
        await cleanup.query("BEGIN");
        await cleanup.query("DELETE FROM visit_requests WHERE counter_id = $1 AND key = 'K'", [id]);
        const cleanupPid = (await cleanup.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
        const blockerPid = (await blocker.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
        await blocker.query("BEGIN");
        // Queued behind the cleanup's row-exclusive lock, and ahead of any insert after it.
        const locked = blocker.query("LOCK visit_requests IN SHARE MODE");
        await until(async () => (await blockers(blockerPid)).join(","), String(cleanupPid));

        // A batch with K again and one visit without a key.
        const batch = store.countBatch(["K", undefined], 20_000);
        batch.catch(() => {});
        const pid = await until(
          async () => ((await blockers(await batchPid())).length > 0 ? "blocked" : "running"),
          "blocked",
        ).then(batchPid);

        // The cleanup commits while the batch is between its look-up and its insert (or
        // waiting to look K up): K is gone by the time the batch inserts.
        await cleanup.query("COMMIT");
        await locked;
        await until(async () => (await blockers(pid)).join(","), String(blockerPid));
        expect(await blockers(pid)).not.toContain(cleanupPid);
        await blocker.query("COMMIT");

        const { visits, count } = await batch;
        expect(count).toBe(3);
        // Every visit its own number, all within the batch's range.
        expect(visits.map((visit) => visit.count).sort()).toEqual([2, 3]);
        const [keyed] = visits;
        // K's row was deleted before the batch could see it: counted anew, stored anew.
        expect(keyed?.replayed).toBe(false);
        const { rows } = await sessions.query(
          "SELECT count FROM visit_requests WHERE counter_id = $1 AND key = 'K'",
          [id],
        );
        expect(rows.map((row) => Number(row.count))).toEqual([keyed?.count]);
      } finally {
        await cleanup.query("ROLLBACK").catch(() => {});
        await blocker.query("ROLLBACK").catch(() => {});
        cleanup.release();
        blocker.release();
      }
    } finally {
      await store.close();
    }
  });

  it("a batch that reaches the server after its deadline (a stalled connection) is never counted", async () => {
    const id = uniqueId("late-batch");
    const store = new PostgresStore(
      loadCounterConfig({ ...counterEnv({ postgres, redis: postgres, id }) }),
      createLogger({ name: "race-test", level: "silent" }),
    );
    try {
      // A new counter's row (the migrate job made only "visits"'s).
      await sessions.query("INSERT INTO visit_counts (id, count) VALUES ($1, 0)", [id]);
      expect((await store.countBatch(["first"], 5_000)).count).toBe(1);
      // The server stalls with the batch on its way; the replica gives up on it.
      await postgres.pause();
      try {
        await expect(store.countBatch(["late"], 300)).rejects.toThrow(/Query read timeout/);
      } finally {
        await postgres.unpause();
      }
      // The server runs what it received once it resumes: wait until nothing does.
      await until(async () => {
        const { rows } = await sessions.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE '%FROM count_visits(%' AND state = 'active' AND pid <> pg_backend_pid()",
        );
        return rows[0]?.n;
      }, 0);
      const { rows } = await sessions.query(
        "SELECT (SELECT count FROM visit_counts WHERE id = $1) AS count, (SELECT count(*)::int FROM visit_requests WHERE counter_id = $1 AND key = 'late') AS keys",
        [id],
      );
      // Not counted: a retry of "late" on another replica, even after the key's lifetime,
      // is its only count.
      expect(rows[0]).toEqual({ count: "1", keys: 0 });
    } finally {
      await store.close();
    }
  });
});
