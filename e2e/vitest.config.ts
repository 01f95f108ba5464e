import { defineConfig } from "vitest/config";

// `pnpm test` (this package's `test`): the checks of the repository that start no stack
// (compose config, docs links, the tutorial map, Turborepo inputs, the CI summary,
// monitoring config and rules). Quick, and run in parallel. The stacks themselves are
// test/stacks/, run by `pnpm test:e2e` (vitest.e2e.config.ts).
export default defineConfig({
  test: {
    include: ["test/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
