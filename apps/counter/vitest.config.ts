import { defineConfig } from "vitest/config";

// Resolve workspace packages to their TypeScript source, as tsc and tsx do.
const conditions = ["@app/source"];
export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    // Integration tests start containers and stop them on purpose.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // One file at a time: the exactness tests count on Redis answering within its
    // deadline, which a starved 2-core machine cannot promise.
    fileParallelism: false,
  },
});
