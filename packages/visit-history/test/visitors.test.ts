import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { checkHistory } from "../src/check.ts";
import type { History } from "../src/history.ts";
import { startVisitors } from "../src/visitors.ts";

interface FakeOptions {
  /** Count a keyed visit's first attempt but answer it 503, as if its answer were lost. */
  loseFirstKeyedAnswer?: boolean;
  /** A bug: every nth visit counted gets the previous visit's number again. */
  duplicateEvery?: number;
  /** Answer every visit 200 with a page that is not JSON (counted all the same). */
  pageInsteadOfJson?: boolean;
}

/** Two replicas of a visit counter over one in-memory count and one map of keys. */
interface FakeCounter {
  targets: string[];
  initialCount: number;
  /** The durable count now. */
  readonly count: number;
  /** The number each key got. */
  keys: Map<string, number>;
  /** Every POST, in order, with its key. */
  posts: { target: string; key: string | undefined }[];
  close: () => Promise<void>;
}

const fakes: FakeCounter[] = [];
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((fake) => fake.close()));
});

async function startFakeCounter(options: FakeOptions = {}): Promise<FakeCounter> {
  const initialCount = 1000;
  let count = initialCount;
  let counted = 0;
  const keys = new Map<string, number>();
  const posts: FakeCounter["posts"] = [];

  const json = (res: ServerResponse, status: number, body: unknown, headers = {}) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify(body));
  };

  const handle = (target: () => string) => (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    if (req.url !== "/visits") return json(res, 404, { error: "not found" });
    if (req.method === "GET") return json(res, 200, { count }, { "x-cache": "miss" });
    if (req.method !== "POST") return json(res, 405, { error: "method not allowed" });

    const header = req.headers["idempotency-key"];
    const key = typeof header === "string" ? header : undefined;
    posts.push({ target: target(), key });
    const earlier = key === undefined ? undefined : keys.get(key);
    if (earlier !== undefined) {
      return json(res, 200, { count: earlier }, { "idempotent-replayed": "true" });
    }

    count++;
    counted++;
    const duplicate =
      options.duplicateEvery !== undefined && counted % options.duplicateEvery === 0;
    const number = duplicate ? count - 1 : count;
    if (key !== undefined) keys.set(key, number);

    if (key !== undefined && options.loseFirstKeyedAnswer) {
      return json(res, 503, { error: "counted, but the answer was lost" });
    }
    if (options.pageInsteadOfJson) {
      res.writeHead(200, { "content-type": "text/html" });
      return res.end("<html>Welcome</html>");
    }
    json(res, 200, { count: number });
  };

  const servers: Server[] = [];
  const targets: string[] = [];
  for (let i = 0; i < 2; i++) {
    const server = createServer(handle(() => targets[i] ?? "?"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    servers.push(server);
    targets.push(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  }

  const fake: FakeCounter = {
    targets,
    initialCount,
    get count() {
      return count;
    },
    keys,
    posts,
    async close() {
      await Promise.all(
        servers.map(
          (server) =>
            new Promise<void>((resolve) => {
              server.closeAllConnections();
              server.close(() => resolve());
            }),
        ),
      );
    },
  };
  fakes.push(fake);
  return fake;
}

/** Visitors against both replicas of the fake for `ms`, then their history. */
async function visit(fake: FakeCounter, ms = 300): Promise<History> {
  const visitors = startVisitors({
    targets: () => fake.targets,
    clients: 4,
    keyedShare: 0.5,
    readShare: 0.3,
    echoShare: 0.5,
  });
  await sleep(ms);
  return visitors.stop();
}

const check = (history: History, fake: FakeCounter) =>
  checkHistory(history, { initialCount: fake.initialCount, finalCount: fake.count });

describe("startVisitors against a fake counter with two replicas", () => {
  it("records visits and reads over both replicas, and the history checks out", async () => {
    const fake = await startFakeCounter();
    const history = await visit(fake);

    expect(history.visits.length).toBeGreaterThan(10);
    expect(history.reads.length).toBeGreaterThan(0);
    expect(history.visits.some((visit) => visit.key !== undefined)).toBe(true);
    expect(history.visits.some((visit) => visit.key === undefined)).toBe(true);
    const targets = new Set(history.visits.flatMap((visit) => visit.attempts.map((a) => a.target)));
    expect([...targets].sort()).toEqual([...fake.targets].sort());
    expect(history.visits.every((visit) => visit.attempts[0]?.status === 200)).toBe(true);
    expect(history.reads.every((read) => read.count !== undefined)).toBe(true);

    const result = check(history, fake);
    expect(result.violations).toEqual([]);
    expect(result.ok).toBe(true);
    expect(result).toMatchObject({
      acknowledged: history.visits.length,
      phantoms: 0,
      reads: history.reads.length,
      readsChecked: history.reads.length,
    });
    expect(result.replaysChecked).toBeGreaterThan(0);
  });

  it("retries a keyed visit whose answer was lost, with the same key, and gets its number replayed", async () => {
    const fake = await startFakeCounter({ loseFirstKeyedAnswer: true });
    const history = await visit(fake);

    const keyed = history.visits.filter((visit) => visit.key !== undefined);
    expect(keyed.length).toBeGreaterThan(0);
    for (const visit of keyed) {
      const key = visit.key as string;
      expect(visit.attempts.map((attempt) => attempt.status)).toEqual([503, 200]);
      expect(visit.attempts[1]).toMatchObject({ count: fake.keys.get(key), replayed: true });
      // The retry (and the echo, if any) carried the key of the first attempt.
      const sent = fake.posts.filter((post) => post.key === key).length;
      expect(sent).toBe(visit.echo === undefined ? 2 : 3);
    }
    for (const visit of history.visits.filter((visit) => visit.key === undefined)) {
      expect(visit.attempts).toHaveLength(1);
      expect(visit.attempts[0]?.replayed).toBe(false);
    }

    const result = check(history, fake);
    expect(result.violations).toEqual([]);
    expect(result).toMatchObject({ ok: true, phantoms: 0, unanswered: 0 });
    expect(result.acknowledged).toBe(history.visits.length);
  });

  it("catches a counter that hands out a number twice: (a)", async () => {
    const fake = await startFakeCounter({ duplicateEvery: 5 });
    const history = await visit(fake);

    const result = check(history, fake);
    expect(result.ok).toBe(false);
    expect(result.violations.some((line) => line.startsWith("(a) number "))).toBe(true);
  });

  it("records a 200 without a number as an answer without a number, not as no answer", async () => {
    const fake = await startFakeCounter({ pageInsteadOfJson: true });
    const history = await visit(fake, 100);

    const attempts = history.visits.flatMap((visit) => visit.attempts);
    expect(attempts.length).toBeGreaterThan(0);
    for (const attempt of attempts) {
      expect(attempt).toMatchObject({ status: 200, error: "no count in <html>Welcome</html>" });
      expect(attempt.count).toBeUndefined();
    }
    // Such an answer is not retried: each visit was sent once, and counted once.
    expect(attempts).toHaveLength(history.visits.length);
    const result = check(history, fake);
    expect(result).toMatchObject({ ok: true, acknowledged: 0, phantoms: attempts.length });
  });
});
