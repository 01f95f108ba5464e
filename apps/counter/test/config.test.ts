import { describe, expect, it } from "vitest";
import { loadCounterConfig } from "../src/config.ts";

describe("counter config", () => {
  it("needs only the database password; everything else has a default", () => {
    const config = loadCounterConfig({ POSTGRES_PASSWORD: "pw" });
    expect(config).toMatchObject({
      PORT: 3002,
      COUNTER_ID: "visits",
      POSTGRES_HOST: "localhost",
      REDIS_URL: "redis://localhost:6379",
      FLUSH_INTERVAL_MS: 200,
      REDIS_COMMAND_TIMEOUT_MS: 500,
    });
  });

  it("rejects a missing password, a non-Redis URL and a zero flush interval together", () => {
    expect(() =>
      loadCounterConfig({ REDIS_URL: "http://cache:6379", FLUSH_INTERVAL_MS: "0" }),
    ).toThrow(/3 problems[\s\S]*POSTGRES_PASSWORD[\s\S]*REDIS_URL[\s\S]*FLUSH_INTERVAL_MS/);
  });
});
