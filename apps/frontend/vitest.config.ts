import { defineConfig } from "vitest/config";

// The tests drive real containers: building the image and waiting for nginx to report
// healthy take seconds, and one test waits out nginx's upstream read timeout, twice.
export default defineConfig({ test: { testTimeout: 120_000, hookTimeout: 180_000 } });
