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
      POSTGRES_TIMEOUT_MS: 1_000,
      REDIS_COMMAND_TIMEOUT_MS: 50,
      CACHE_TTL_SECONDS: 5,
      IDEMPOTENCY_KEY_TTL_SECONDS: 300,
    });
  });

  it("rejects a missing password, a non-Redis URL and a zero deadline together", () => {
    expect(() =>
      loadCounterConfig({ REDIS_URL: "http://cache:6379", POSTGRES_TIMEOUT_MS: "0" }),
    ).toThrow(/3 problems[\s\S]*POSTGRES_PASSWORD[\s\S]*REDIS_URL[\s\S]*POSTGRES_TIMEOUT_MS/);
  });

  it.each(["POSTGRES_TIMEOUT_MS", "REDIS_COMMAND_TIMEOUT_MS", "CACHE_TTL_SECONDS"])(
    "rejects %s of 0 or below: it would turn a deadline off",
    (name) => {
      for (const value of ["0", "-5"]) {
        expect(() => loadCounterConfig({ POSTGRES_PASSWORD: "pw", [name]: value })).toThrow(
          new RegExp(`${name}: must be a whole number of \\w+ above 0`),
        );
      }
    },
  );

  it("rejects a cache lifetime no longer than the PostgreSQL deadline", () => {
    expect(() =>
      loadCounterConfig({
        POSTGRES_PASSWORD: "pw",
        CACHE_TTL_SECONDS: "2",
        POSTGRES_TIMEOUT_MS: "2000",
      }),
    ).toThrow(/CACHE_TTL_SECONDS: must be longer than POSTGRES_TIMEOUT_MS/);
  });
});
