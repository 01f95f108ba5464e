import { defineConfig } from "vitest/config";

// Resolve workspace packages to their TypeScript source, as tsc and tsx do.
const conditions = ["@app/source"];
export default defineConfig({ resolve: { conditions }, ssr: { resolve: { conditions } } });
