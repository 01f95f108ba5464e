import { defineConfig } from "vitest/config";

// `pnpm test:e2e` (this package's `test:e2e`): each file of test/stacks/ builds and runs
// a whole Compose stack.
export default defineConfig({
  test: {
    include: ["test/stacks/*.test.ts"],
    // One stack at a time is kinder to a 2-core machine.
    fileParallelism: false,
    testTimeout: 120_000,
    // `up --build` of a cold stack includes image builds.
    hookTimeout: 600_000,
  },
});
