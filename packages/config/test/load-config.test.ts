import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ConfigError, loadConfig, port } from "../src/index.ts";

const schema = z.object({
  PORT: port(3001),
  DATABASE_PASSWORD: z.string().min(1),
  GREETING: z.string().default("hi"),
});

function secretFile(content: string): string {
  const dir = mkdtempSync(join(tmpdir(), "config-test-"));
  const path = join(dir, "secret");
  writeFileSync(path, content);
  return path;
}

describe("loadConfig", () => {
  it("parses and coerces values, applying defaults", () => {
    const config = loadConfig("demo", schema, { PORT: "4000", DATABASE_PASSWORD: "pw" });
    expect(config).toEqual({ PORT: 4000, DATABASE_PASSWORD: "pw", GREETING: "hi" });
  });

  it("reads NAME_FILE variants and drops the trailing newline", () => {
    const config = loadConfig("demo", schema, { DATABASE_PASSWORD_FILE: secretFile("s3cret\n") });
    expect(config.DATABASE_PASSWORD).toBe("s3cret");
    expect(config.PORT).toBe(3001);
  });

  it("lists every problem in one error", () => {
    let caught: unknown;
    try {
      loadConfig("demo", schema, { PORT: "not-a-port" });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const error = caught as ConfigError;
    expect(error.problems).toHaveLength(2);
    expect(error.message).toMatch(/^Invalid configuration for demo \(2 problems\)/);
    expect(error.message).toContain("PORT: ");
    expect(error.message).toContain('got "not-a-port"');
    expect(error.message).toContain("DATABASE_PASSWORD: ");
    expect(error.message).toContain("it is not set");
  });

  it("rejects a variable given both directly and as a file", () => {
    expect(() =>
      loadConfig("demo", schema, {
        DATABASE_PASSWORD: "a",
        DATABASE_PASSWORD_FILE: secretFile("b"),
      }),
    ).toThrow(/set either DATABASE_PASSWORD or DATABASE_PASSWORD_FILE, not both/);
  });

  it("reports an unreadable secret file", () => {
    expect(() =>
      loadConfig("demo", schema, { DATABASE_PASSWORD_FILE: "/nonexistent/secret" }),
    ).toThrow(/DATABASE_PASSWORD_FILE: cannot read \/nonexistent\/secret/);
  });

  it("never echoes the value of a secret", () => {
    const strict = z.object({ API_KEY: z.string().length(32) });
    const load = () => loadConfig("demo", strict, { API_KEY: "leaky-value" });
    expect(load).toThrow(/API_KEY: .*\(value hidden\)/);
    expect(load).not.toThrow(/leaky-value/);
  });
});
