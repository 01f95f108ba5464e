import { describe, expect, it } from "vitest";
import type { z } from "zod";
import {
  logLevel,
  nodeEnv,
  port,
  positiveDuration,
  shutdownDelayMs,
  shutdownTimeoutMs,
} from "../src/index.ts";

/** The parsed value, or the first issue's message. */
function parse(schema: z.ZodType, value: string | undefined): unknown {
  const result = schema.safeParse(value);
  return result.success ? result.data : `error: ${result.error.issues[0]?.message}`;
}

describe("fields", () => {
  it("port: a whole number 1-65535 from a string, else its default", () => {
    const field = port(3001);
    expect(parse(field, undefined)).toBe(3001);
    expect(parse(field, "1")).toBe(1);
    expect(parse(field, "65535")).toBe(65_535);
    for (const bad of ["0", "65536", "-1", "80.5", "http"]) {
      expect({ bad, parsed: parse(field, bad) }).toEqual({
        bad,
        parsed: expect.stringMatching(/^error: /),
      });
    }
  });

  it("logLevel and nodeEnv: one of pino's levels / Node's environments, with defaults", () => {
    expect(parse(logLevel, undefined)).toBe("info");
    expect(parse(logLevel, "debug")).toBe("debug");
    expect(parse(logLevel, "silent")).toBe("silent");
    expect(parse(logLevel, "verbose")).toMatch(/^error: /);
    expect(parse(nodeEnv, undefined)).toBe("development");
    expect(parse(nodeEnv, "production")).toBe("production");
    expect(parse(nodeEnv, "prod")).toMatch(/^error: /);
  });

  it("positiveDuration: whole units above 0, saying which unit when not", () => {
    const ttl = positiveDuration("seconds", 5);
    expect(parse(ttl, undefined)).toBe(5);
    expect(parse(ttl, "1")).toBe(1);
    for (const bad of ["0", "-3", "1.5"]) {
      expect({ bad, parsed: parse(ttl, bad) }).toEqual({
        bad,
        parsed: "error: must be a whole number of seconds above 0",
      });
    }
    expect(parse(shutdownTimeoutMs, undefined)).toBe(10_000);
    expect(parse(shutdownTimeoutMs, "0")).toBe(
      "error: must be a whole number of milliseconds above 0",
    );
  });

  it("shutdownDelayMs: 0 (the default, no delay) or more", () => {
    expect(parse(shutdownDelayMs, undefined)).toBe(0);
    expect(parse(shutdownDelayMs, "0")).toBe(0);
    expect(parse(shutdownDelayMs, "3000")).toBe(3_000);
    expect(parse(shutdownDelayMs, "-1")).toMatch(/^error: /);
  });
});
