import { ConfigError } from "@app/config";
import { describe, expect, it } from "vitest";
import { loadBackendConfig } from "../src/config.ts";

describe("backend config", () => {
  it("works with no variables at all", () => {
    expect(loadBackendConfig({})).toEqual({
      PORT: 3001,
      NODE_ENV: "development",
      LOG_LEVEL: "info",
      SHUTDOWN_TIMEOUT_MS: 10_000,
    });
  });

  it("fails with one message naming every bad variable", () => {
    expect(() => loadBackendConfig({ PORT: "0", LOG_LEVEL: "loud" })).toThrow(ConfigError);
    expect(() => loadBackendConfig({ PORT: "0", LOG_LEVEL: "loud" })).toThrow(
      /2 problems[\s\S]*PORT[\s\S]*LOG_LEVEL/,
    );
  });
});
