import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // Each file builds and runs a whole stack: one at a time is kinder to a 2-core machine.
    fileParallelism: false,
    testTimeout: 120_000,
    // `up --build` of a cold stack includes image builds.
    hookTimeout: 600_000,
  },
});
