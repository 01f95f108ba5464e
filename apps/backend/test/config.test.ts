import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { ConfigError } from "@app/config";
import { describe, expect, it } from "vitest";
import { loadBackendConfig } from "../src/config.ts";

describe("backend config", () => {
  it("works with no variables at all", () => {
    expect(loadBackendConfig({})).toEqual({
      PORT: 3001,
      METRICS_PORT: 9464,
      NODE_ENV: "development",
      LOG_LEVEL: "info",
      SHUTDOWN_TIMEOUT_MS: 10_000,
      SHUTDOWN_DELAY_MS: 0,
    });
  });

  it("refuses a shutdown deadline of 0, which would cut every request at once", () => {
    expect(() => loadBackendConfig({ SHUTDOWN_TIMEOUT_MS: "0" })).toThrow(
      /SHUTDOWN_TIMEOUT_MS: must be a whole number of milliseconds above 0/,
    );
    expect(loadBackendConfig({ SHUTDOWN_DELAY_MS: "0" }).SHUTDOWN_DELAY_MS).toBe(0);
  });

  it("fails with one message naming every bad variable", () => {
    expect(() => loadBackendConfig({ PORT: "0", LOG_LEVEL: "loud" })).toThrow(ConfigError);
    expect(() => loadBackendConfig({ PORT: "0", LOG_LEVEL: "loud" })).toThrow(
      /2 problems[\s\S]*PORT[\s\S]*LOG_LEVEL/,
    );
  });
});

const run = promisify(execFile);

describe("backend start-up with bad configuration", () => {
  it("exits 1 with one message listing every problem, and no stack trace", async () => {
    const failure = await run(process.execPath, ["--conditions=@app/source", "src/main.ts"], {
      cwd: new URL("..", import.meta.url),
      env: { ...process.env, PORT: "http", LOG_LEVEL: "loud" },
      timeout: 20_000,
    }).then(
      () => {
        throw new Error("the backend started with a bad configuration");
      },
      (error: { code: number; stderr: string }) => error,
    );
    expect(failure.code).toBe(1);
    expect(failure.stderr.trim().split("\n")).toEqual([
      "Invalid configuration for backend (2 problems):",
      expect.stringMatching(/^ {2}- PORT: .*got "http"/),
      expect.stringMatching(/^ {2}- LOG_LEVEL: .*got "loud"/),
    ]);
  });
});
