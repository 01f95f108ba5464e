import { defineConfig } from "vitest/config";

// The tests drive real containers: building the image and waiting for nginx to report
// healthy take seconds, and one test waits out nginx's upstream read timeout, twice.
// The image and the fake services are made once (globalSetup) for every file; the files
// run one at a time, so no two read the fakes' recorded requests at once.
export default defineConfig({
  test: {
    globalSetup: ["test/support/global-setup.ts"],
    fileParallelism: false,
    // One worker for every file (they run one after the other anyway): saves starting a
    // worker per file. Every file removes what it created in its own afterAll.
    isolate: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
  },
});
