import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { ConfigError, loadConfig, loadConfigOrExit, port } from "../src/index.ts";

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

  it("drops one trailing newline, CRLF too, and keeps the rest of the file as it is", () => {
    const read = (content: string) =>
      loadConfig("demo", schema, { DATABASE_PASSWORD_FILE: secretFile(content) }).DATABASE_PASSWORD;
    expect(read("crlf\r\n")).toBe("crlf");
    expect(read("two\n\n")).toBe("two\n");
    expect(read(" spaced ")).toBe(" spaced ");
  });

  it("takes an empty NAME_FILE as not set", () => {
    const config = loadConfig("demo", schema, {
      DATABASE_PASSWORD: "direct",
      DATABASE_PASSWORD_FILE: "",
    });
    expect(config.DATABASE_PASSWORD).toBe("direct");
  });

  it("reports a bad secret file once, not again as an unset variable", () => {
    const error = captured(() =>
      loadConfig("demo", schema, { DATABASE_PASSWORD_FILE: "/nonexistent/secret" }),
    );
    expect(error.problems).toEqual([
      expect.stringMatching(/^DATABASE_PASSWORD_FILE: cannot read \/nonexistent\/secret/),
    ]);
    expect(error.message).toMatch(/^Invalid configuration for demo \(1 problem\):\n {2}- /);
  });

  it("hides the values of names that look secret, and only those", () => {
    const names = ["DB_PASSWORD", "CLIENT_SECRET", "API_TOKEN", "TLS_KEY", "KEY", "MONKEY"];
    const strict = z.object(Object.fromEntries(names.map((name) => [name, z.string().min(99)])));
    const env = Object.fromEntries(names.map((name) => [name, `value-of-${name}`]));
    const { problems } = captured(() => loadConfig("demo", strict, env));
    const shown = problems.filter((problem) => problem.includes("value-of-"));
    expect(shown).toEqual([expect.stringMatching(/^MONKEY: .*got "value-of-MONKEY"/)]);
    expect(problems.filter((problem) => problem.endsWith("(value hidden)"))).toHaveLength(5);
  });

  it("never echoes a secret read from a file either", () => {
    const strict = z.object({ API_KEY: z.string().length(32) });
    const { message } = captured(() =>
      loadConfig("demo", strict, { API_KEY_FILE: secretFile("short-secret\n") }),
    );
    expect(message).toContain("API_KEY: ");
    expect(message).toContain("(value hidden)");
    expect(message).not.toContain("short-secret");
  });
});

describe("loadConfigOrExit", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("returns the configuration", () => {
    expect(loadConfigOrExit(() => ({ PORT: 1 }))).toEqual({ PORT: 1 });
  });

  it("prints a ConfigError's message, no stack, and exits with 1", () => {
    const exit = vi.spyOn(process, "exit").mockImplementation((() => {
      throw new Error("exit called");
    }) as never);
    const stderr = vi.spyOn(console, "error").mockImplementation(() => {});
    expect(() => loadConfigOrExit(() => loadConfig("demo", schema, {}))).toThrow("exit called");
    expect(exit).toHaveBeenCalledWith(1);
    expect(stderr).toHaveBeenCalledTimes(1);
    const printed = String(stderr.mock.calls[0]?.[0]);
    expect(printed).toMatch(
      /^Invalid configuration for demo \(1 problem\):\n {2}- DATABASE_PASSWORD: /,
    );
    expect(printed).not.toContain("    at ");
  });

  it("lets any other error through, with its stack", () => {
    const exit = vi.spyOn(process, "exit");
    expect(() =>
      loadConfigOrExit(() => {
        throw new TypeError("a bug");
      }),
    ).toThrow(TypeError);
    expect(exit).not.toHaveBeenCalled();
  });
});

/** The ConfigError `load` throws (fails the test when it throws nothing or something else). */
function captured(load: () => unknown): ConfigError {
  try {
    load();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected a ConfigError");
}
