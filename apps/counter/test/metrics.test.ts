import { describe, expect, it } from "vitest";
import {
  batchSize,
  cacheRequests,
  postgresErrorKind,
  postgresErrors,
  recordBatch,
  recordPostgresError,
  visitReplays,
  visitsCounted,
} from "../src/metrics.ts";

async function value(
  metric: { get(): Promise<{ values: { value: number; labels: object; metricName?: string }[] }> },
  match: (entry: { labels: object; metricName?: string }) => boolean,
) {
  return (await metric.get()).values.find(match)?.value;
}

describe("counter metrics", () => {
  it("counts a batch's new visits and replays apart, and observes its size", async () => {
    recordBatch(5, 2, 0.004);
    expect((await visitsCounted.get()).values[0]?.value).toBe(3);
    expect((await visitReplays.get()).values[0]?.value).toBe(2);
    expect(await value(batchSize, (entry) => entry.metricName === "counter_batch_size_sum")).toBe(
      5,
    );
    expect(
      await value(
        batchSize,
        (entry) =>
          entry.metricName === "counter_batch_size_bucket" &&
          (entry.labels as { le: number }).le === 4,
      ),
    ).toBe(0);
  });

  it("tells a missed deadline, an unreachable server and a refused statement apart", () => {
    // pg's query_timeout and connectionTimeoutMillis, and the server's statement_timeout.
    expect(postgresErrorKind(new Error("Query read timeout"))).toBe("timeout");
    expect(postgresErrorKind(new Error("timeout exceeded when trying to connect"))).toBe("timeout");
    expect(
      postgresErrorKind(Object.assign(new Error("canceling statement"), { code: "57014" })),
    ).toBe("timeout");
    expect(postgresErrorKind(Object.assign(new Error("lock timeout"), { code: "55P03" }))).toBe(
      "timeout",
    );
    expect(
      postgresErrorKind(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" })),
    ).toBe("connection");
    expect(
      postgresErrorKind(Object.assign(new Error("terminating connection"), { code: "57P01" })),
    ).toBe("connection");
    expect(postgresErrorKind(new Error("Connection terminated unexpectedly"))).toBe("connection");
    expect(
      postgresErrorKind(Object.assign(new Error("permission denied"), { code: "42501" })),
    ).toBe("query");
  });

  it("exposes every label value from the start, so rates exist before the first error", async () => {
    const kinds = (await postgresErrors.get()).values.map((entry) => entry.labels.kind);
    expect(kinds).toEqual(["timeout", "connection", "query"]);
    const results = (await cacheRequests.get()).values.map((entry) => entry.labels.result);
    expect(results).toEqual(["hit", "miss", "error"]);
    const late = new Error("Query read timeout");
    expect(() => recordPostgresError(late)).toThrow(late);
    expect(
      await value(postgresErrors, (entry) => (entry.labels as { kind: string }).kind === "timeout"),
    ).toBe(1);
  });
});
